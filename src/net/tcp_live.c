#include "net/tcp_live.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int sl_tcp_live(uv_tcp_t *t)
{
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)t, &fd);
    if (rc != 0)
        return rc;
    int on = 1, idle = 15, intvl = 5, cnt = 6;
    unsigned int user_ms = SL_TCP_LIVE_MS;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) !=
            0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms,
                   sizeof(user_ms)) != 0)
        return -errno;
    return 0;
}
