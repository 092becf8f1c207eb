"""schemathesis hooks for taskd's OpenAPI document: generators for its custom formats."""
import schemathesis
from hypothesis import strategies as st

# `asset-url`: the S3 URLs every deployment without asset scopes accepts (buckets of lowercase
# letters and digits, keys of plain segments). The server's own rules are broader; its 422s
# name them.
_SEGMENT = r"[A-Za-z0-9_-]{1,12}(\.[A-Za-z0-9_-]{1,8})?"
schemathesis.openapi.format(
    "asset-url",
    st.from_regex(rf"\As3://[a-z0-9]{{3,20}}/{_SEGMENT}(/{_SEGMENT}){{0,4}}\Z"),
)

# `webhook-url`: loopback URLs on the discard port, which the test deployment allows
# (allow_private_addresses) and never calls (dispatch = false).
schemathesis.openapi.format(
    "webhook-url",
    st.from_regex(rf"\Ahttp://127\.0\.0\.1:9/{_SEGMENT}(/{_SEGMENT}){{0,2}}\Z"),
)
