"""What an operator watches a running server by: its log lines (logs.py), Prometheus metrics
(metrics.py), OpenTelemetry traces (tracing.py), both recorded per operation by the gate
through watch.py."""
