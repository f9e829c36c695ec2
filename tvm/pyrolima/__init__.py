"""Brings up the platform: a Lima VM with K3s + Istio, or a Kubernetes deployment."""
