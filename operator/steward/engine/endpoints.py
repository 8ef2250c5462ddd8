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
) -> None:
    """Set uri and healthUrl: from a URI the runtime knows (a Terraform output), else
    protocol://host:port of the chosen port. A runtime whose endpoint comes from its
    outputs gets none until it reports one."""
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
    st.uri = render_uri(ep.protocol, ep.host, st.port)
    check = ep.effective_health_check()
    st.health_url = (
        render_uri(ep.protocol, ep.host, st.port, check.http.path)
        if check.http is not None and ep.protocol is not EndpointProtocol.TCP
        else None
    )
