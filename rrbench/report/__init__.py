"""The per-run HTML page (`rrbench report RUN`): ``page.write_report``; its CSS and script in ``assets``."""
