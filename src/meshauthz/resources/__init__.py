"""Kubernetes and Istio manifests: loading with positions, typed models, validation."""
