//! Packaging: compose file, Prometheus and Grafana provisioning parse and match the metrics.
