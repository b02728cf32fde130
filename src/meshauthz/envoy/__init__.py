"""Envoy's filters as meshauthz models them, with no Istio knowledge.

Each filter has a model, one reader and writer of Envoy's JSON, and one
evaluator: ``rbac`` (envoy.config.rbac.v3), ``jwt_authn``, ``ext_authz``,
``hcm`` (the HTTP connection manager's codec checks, path options and
X-Forwarded-For settings) and ``listener`` (filter chain matching).
``proto_json`` reads fields in either JSON spelling. Istio's mapping onto
them lives in ``meshauthz.translate``.
"""
