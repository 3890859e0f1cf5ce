"""Receive: Outreach → Workbooks. Filled by the receive stage (poll → plan → apply), which runs
before send in the same run and writes to Workbooks through sync/writeback.py."""
