"""Where the running service can be reached, as status.endpoint shows it."""

from __future__ import annotations

from steward.api.endpoint import EndpointProtocol, EndpointSpec
from steward.api.status import EndpointStatus
from steward.health.probes import render_uri


def fill_endpoint(
    st: EndpointStatus,
    ep: EndpointSpec | None,
    runtime_uri: str | None = None,
    from_outputs: bool = False,
    service_host: str | None = None,
) -> None:
    """Set uri and healthUrl: from a URI the runtime knows (a Terraform output), else
    protocol://host:port of the chosen port. A runtime whose endpoint comes from its
    outputs gets none until it reports one. With ``service_host`` (``expose: Cluster`` on a
    host with a routable address) uri names the Service on the spec's port, and hostUri
    the address the host serves it on; the probe keeps going to the host."""
    if runtime_uri:
        st.uri = runtime_uri
        check = ep.effective_health_check() if ep is not None else None
        if check is not None and check.http is not None:
            st.health_url = runtime_uri.rstrip("/") + check.http.path
        return
    if ep is None or st.port is None or from_outputs:
        return
    st.protocol = ep.protocol
    st.host = ep.host
    host_uri = render_uri(ep.protocol, ep.host, st.port)
    if service_host is not None and ep.port is not None:
        st.uri = render_uri(ep.protocol, service_host, ep.port)
        st.host_uri = host_uri
    else:
        st.uri = host_uri
        st.host_uri = None
    check = ep.effective_health_check()
    st.health_url = (
        render_uri(ep.protocol, ep.host, st.port, check.http.path)
        if check.http is not None and ep.protocol is not EndpointProtocol.TCP
        else None
    )
