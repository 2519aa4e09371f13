/* An allocation's public UDP port (docs/hub.md, "TCP and UDP through
 * bridges"). */
#include <unistd.h>

#include "core/error.h"
#include "hub/hub_int.h"

int hub_udp_open(struct hub_streams *s, int fd, int port)
{
    (void)s;
    (void)port;
    close(fd);
    return UV_ENOSYS;
}

void hub_udp_close(struct hub_streams *s)
{
    (void)s;
}

int hub_udp_data(struct hub_alloc *a, struct hub_conn *d)
{
    (void)a;
    (void)d;
    return 0;
}
