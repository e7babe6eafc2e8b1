// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "netns.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* asm-generic/socket.h, Linux 5.14 */
#endif

int netns_cookie(__u64 *cookie, struct errmsg *e)
{
	socklen_t len = sizeof(*cookie);
	int fd, err = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errmsg_set(e, -errno, "socket for SO_NETNS_COOKIE");
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len))
		err = errmsg_set(e, -errno, "getsockopt SO_NETNS_COOKIE");
	close(fd);
	return err;
}
