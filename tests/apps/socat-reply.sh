#!/bin/sh
# socat runs this for each connection (TCP-LISTEN,fork ... EXEC:): read the request head up to
# its blank line (unread data would turn socat's close into a reset), answer, end.
while IFS= read -r line; do
  [ "${#line}" -le 1 ] && break
done
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok pid=%s\n' "$$"
