"""Ambient mode: what istiod sends to ztunnel and how ztunnel decides.

ztunnel's authorization is its own model (``authorization``, ``evaluate``),
not Envoy RBAC; istiod's conversion of Istio resources into it is in
``convert``, the feature flags that change it in ``flags``.
"""
