"""Envoy's filters as meshauthz models them, with no Istio knowledge.

Each filter has a model, one reader and writer of Envoy's JSON, and one
evaluator: ``rbac`` (envoy.config.rbac.v3), ``jwt_authn``, ``hcm`` (the HTTP
connection manager's codec checks, path normalization and X-Forwarded-For).
Istio's mapping onto them lives in ``meshauthz.translate``.
"""
