"""What an operator watches a running server by: its log lines (logs.py)."""
