"""TLS on the S3 port, with certificates renewed without a restart.

Certificates from ACME or an internal CA are renewed every few weeks; restarting the
gateway for that would cut every open connection. Instead SIGHUP loads the new files
into the live `SSLContext`: each new handshake takes the context's certificate at that
moment, while connections already open keep the one they were set up with.
"""
from __future__ import annotations

import logging
import ssl

log = logging.getLogger("pocket.tls")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The context the S3 listener serves; raises ssl.SSLError/OSError naming what is wrong."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def reload(ctx: ssl.SSLContext, cert: str, key: str) -> bool:
    """Swap the live context's certificate for the files' current contents.

    The pair is tried on a scratch context first: `load_cert_chain` installs the chain
    before it checks the key, so a bad pair loaded straight into the live context would
    leave it serving a certificate whose key it does not have. On any problem the old
    certificate stays and the error is logged."""
    try:
        server_context(cert, key)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        log.error("TLS certificate reload from %s / %s failed (%s); still serving the previous certificate. "
                  "Fix the files and send SIGHUP again.", cert, key, e)
        return False
    log.info("TLS certificate reloaded from %s; new connections use it", cert)
    return True
