"""Envoy's filters as meshauthz models them, with no Istio knowledge.

Each filter has a model, one reader and writer of Envoy's JSON, and one
evaluator: ``rbac`` (envoy.config.rbac.v3), ``jwt_authn``, ``ext_authz``,
``hcm`` (the HTTP connection manager's method check, path options and
X-Forwarded-For settings), ``codec`` (the HTTP/1.1 header block: trimming,
joining, refusals), ``request_headers`` (the headers the connection manager
adds, rewrites and drops), ``route`` (which route a request takes, for
per-route filter configuration), ``listener`` (filter chain matching) and
``runtime`` (the runtime flags that change what the proxy does).
``proto_json`` reads fields in either JSON spelling. Istio's mapping onto
them lives in ``meshauthz.translate``.
"""
