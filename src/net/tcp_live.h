/* Dead-path detection for the tunnel's own TCP connections (hub <->
 * bridge). A raw data connection carries no WebSocket pings, and a path
 * that dies silently (a NAT losing its state, a cable pulled) leaves both
 * ends waiting for ever; the kernel can notice instead. */
#ifndef SL_NET_TCP_LIVE_H
#define SL_NET_TCP_LIVE_H

#include <uv.h>

/* After 45 s: keep-alive probes from 15 s of silence (every 5 s, 6 of
 * them), and TCP_USER_TIMEOUT for data sent but not acknowledged. A peer
 * that is alive but not reading (a zero window) still answers probes, so
 * back-pressure is not mistaken for death. t must have its socket (after
 * accept or connect). Returns 0 or a negative errno. */
int sl_tcp_live(uv_tcp_t *t);

#define SL_TCP_LIVE_MS 45000

#endif
