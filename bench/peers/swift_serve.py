"""Run one OpenStack Swift server (WSGI app) with its swift.conf in a folder of ours.

Run by Debian's python3 (the one python3-swift is built for), never imported by Pocket:
    /usr/bin/python3 swift_serve.py ETC_DIR SERVER_CONF APP_NAME
Swift 2.30 reads /etc/swift/swift.conf from a hard-coded path; it is repointed before
anything loads it, so nothing is written to /etc.
"""
import sys

etc, conf, app = sys.argv[1:4]
from swift.common import utils  # noqa: E402

utils.SWIFT_CONF_FILE = etc + "/swift.conf"
from swift.common import constraints, storage_policy  # noqa: E402

storage_policy.reload_storage_policies()
constraints.reload_constraints()
from swift.common.wsgi import run_wsgi  # noqa: E402

kw = {}
if app == "object-server":
    from swift.obj import server
    kw["global_conf_callback"] = server.global_conf_callback
sys.exit(run_wsgi(conf, app, **kw))
