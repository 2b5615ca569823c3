"""Per-tenant prefix-cache salt: vLLM's ``cache_salt`` keyed by an HMAC of the tenant name.

Requests with different salts never share prefix-cache blocks in vLLM, so one tenant can neither hit nor
time another tenant's cached prefix; requests of one tenant (edge sessions and OpenAI calls alike) share
the same salt and so keep their hits. The secret keeps salts unguessable from tenant names.
"""

from __future__ import annotations

import hashlib
import hmac


def tenant_cache_salt(secret: str, tenant: str) -> str:
    """The salt of ``tenant``: hex HMAC-SHA256 of the tenant name under ``secret``."""
    return hmac.new(secret.encode(), tenant.encode(), hashlib.sha256).hexdigest()
