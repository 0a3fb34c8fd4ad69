#!/usr/bin/env bash
# Seeds the fuzz corpora from the test data: whole messages for
# parse_message, and their header values for the URI and auth targets.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/parse_message corpus/parse_uri corpus/parse_auth corpus/proxy
cp ../tests/data/rfc4475/*.dat ../tests/data/rfc4475/non-rfc/*.dat ../benches/data/*.sip corpus/parse_message/
# The proxy target: the same messages, each sent by the carrier (the
# first byte picks the sender, modulo 4; NUL separates datagrams).
for f in corpus/parse_message/*; do
    { printf '\004'; cat "$f"; } > "corpus/proxy/$(basename "$f")"
done
python3 - <<'PY'
import glob, hashlib, os, re
for path in glob.glob('corpus/parse_message/*'):
    data = open(path, 'rb').read()
    head = data.split(b'\r\n\r\n', 1)[0]
    for line in re.split(rb'\r\n(?![ \t])', head)[1:]:
        name, _, value = line.partition(b':')
        name = name.strip().lower()
        target = None
        if name in (b'to', b't', b'from', b'f', b'contact', b'm', b'route', b'record-route', b'v', b'via'):
            target = 'parse_uri'
        elif name in (b'authorization', b'proxy-authorization', b'www-authenticate', b'proxy-authenticate'):
            target = 'parse_auth'
        if target:
            value = value.strip()
            h = hashlib.sha1(value).hexdigest()[:16]
            open(os.path.join('corpus', target, h), 'wb').write(value)
PY
printf 'Digest username="a", realm="b", nonce="c", uri="sip:x", response="d", qop=auth, nc=00000001, cnonce="e", algorithm=SHA-256' > corpus/parse_auth/digest
