"""Send: Workbooks → Outreach, one pipeline per kind of record (pipeline.py)."""
