"""A VM's cloud-init user data carrying its SSH client key (team mode, where Nova key pairs are
not used: see ``cloud.OpenStackCloud.create``): a MIME multipart of the admin's
``user_data`` (as it is: cloud-init tells a script from a cloud-config by its first line) and a
cloud-config part adding the key to the default user's ``authorized_keys``, merged by appending
so that keys the admin's own cloud-config lists stay.
"""

from __future__ import annotations

import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

#: cloud-init's merge rule for our part: lists appended, not replaced.
MERGE = "list(append)+dict(no_replace,recurse_list)+str()"


def with_authorized_key(user_data: str, public_key: str) -> str:
    """``user_data`` with ``public_key`` ("type base64 [comment]") authorized for the VM's
    default user."""
    key = " ".join(public_key.split()[:2])
    message = MIMEMultipart()
    if user_data:
        # text/plain: cloud-init decides the part's type from its first line.
        message.attach(MIMEText(user_data, "plain"))
    config = MIMEText(
        "#cloud-config\n" + json.dumps({"ssh_authorized_keys": [key]}) + "\n", "cloud-config"
    )
    config["Merge-Type"] = MERGE
    message.attach(config)
    return message.as_string()
