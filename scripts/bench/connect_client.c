/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * connect-bench: the client and the server of scripts/bench/connect.
 *
 *   connect-bench server -l ADDR:PORT [-l ADDR:PORT ...] -c COUNTFILE
 *       Listens on every ADDR:PORT, accepts and closes at once, forever.
 *       COUNTFILE holds a 64-bit counter of accepted connections (mmap,
 *       atomic); the file appears only once every socket listens, so its
 *       existence means "ready".
 *
 *   connect-bench server -u -l ADDR:PORT [-l ADDR:PORT ...] -c COUNTFILE
 *       UDP: answers every datagram with itself, to its sender; COUNTFILE
 *       counts the datagrams.
 *
 *   connect-bench client [-u] -a ADDR -p PORT -n N [-w WARMUP] [-t SECONDS]
 *                        [-c COUNTFILE]
 *       WARMUP untimed then N timed iterations of socket / connect / close
 *       to ADDR:PORT (stops early after SECONDS of timed work, if given).
 *       Every socket closes with SO_LINGER {1, 0}: an RST, no TIME_WAIT, so
 *       the ephemeral ports never run out. Prints one line:
 *         ns_per_connect=<mean> connects=<n> elapsed_ns=<total>
 *       -u: unconnected UDP, as a DNS client does: one socket, each
 *       iteration a sendto() to ADDR:PORT and a recvfrom() of the reply
 *       (whose source must be ADDR:PORT again: the reverse translation).
 *       The line then says ns_per_connect for the exchange all the same.
 *       With -c, checks afterwards that the server behind COUNTFILE
 *       accepted every connect (so a run that reached some other listener,
 *       or was not translated, fails instead of producing a figure).
 *       Exit status 0 on success, 1 on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTEN 16

static void usage(void)
{
	fprintf(stderr,
		"usage: connect-bench server [-u] -l ADDR:PORT [-l ADDR:PORT ...] -c COUNTFILE\n"
		"       connect-bench client [-u] -a ADDR -p PORT -n N [-w WARMUP] [-t SECONDS] "
		"[-c COUNTFILE]\n");
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_addr(const char *addr, unsigned long port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (port == 0 || port > 65535)
		return -1;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1)
		return -1;
	return 0;
}

static int parse_addr_port(const char *text, struct sockaddr_in *sa)
{
	char buf[64];
	char *colon, *end;
	unsigned long port;

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	colon = strrchr(buf, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end)
		return -1;
	return parse_addr(buf, port, sa);
}

static unsigned long parse_count(const char *text, const char *what)
{
	char *end;
	unsigned long value;

	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno || *end || end == text) {
		fprintf(stderr, "connect-bench: bad %s: %s\n", what, text);
		exit(2);
	}
	return value;
}

/* The shared accept counter: a file of 8 bytes, mapped. */
static volatile uint64_t *map_counter(const char *path, int create)
{
	int fd;
	void *mem;

	fd = open(path, create ? O_RDWR | O_CREAT | O_TRUNC : O_RDONLY, 0644);
	if (fd < 0) {
		fprintf(stderr, "connect-bench: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (create && ftruncate(fd, sizeof(uint64_t)) < 0) {
		fprintf(stderr, "connect-bench: %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	mem = mmap(NULL, sizeof(uint64_t), create ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		   fd, 0);
	close(fd);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "connect-bench: mmap %s: %s\n", path, strerror(errno));
		return NULL;
	}
	return mem;
}

/* Answers every waiting datagram with itself; -1 on a real error. */
static int echo_datagrams(int fd, volatile uint64_t *counter)
{
	char buf[512];
	struct sockaddr_in from;

	for (;;) {
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR || errno == ECONNREFUSED)
				continue;
			fprintf(stderr, "connect-bench server: recvfrom: %s\n", strerror(errno));
			return -1;
		}
		__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
		/* a full socket buffer loses the reply: the client times out and says so */
		sendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&from, len);
	}
}

static int run_server(int argc, char **argv)
{
	struct sockaddr_in addrs[MAX_LISTEN];
	struct pollfd fds[MAX_LISTEN];
	const char *count_path = NULL;
	char tmp_path[4096];
	volatile uint64_t *counter;
	int naddr = 0, opt, i, udp = 0;

	while ((opt = getopt(argc, argv, "ul:c:")) != -1) {
		switch (opt) {
		case 'u':
			udp = 1;
			break;
		case 'l':
			if (naddr == MAX_LISTEN || parse_addr_port(optarg, &addrs[naddr]) < 0) {
				fprintf(stderr, "connect-bench: bad listen address: %s\n", optarg);
				return 2;
			}
			naddr++;
			break;
		case 'c':
			count_path = optarg;
			break;
		default:
			usage();
		}
	}
	if (naddr == 0 || !count_path)
		usage();

	for (i = 0; i < naddr; i++) {
		int one = 1;
		int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
				0);

		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&addrs[i], sizeof(addrs[i])) < 0 ||
		    (!udp && listen(fd, 4096) < 0)) {
			char text[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &addrs[i].sin_addr, text, sizeof(text));
			fprintf(stderr, "connect-bench server: listen %s:%u: %s\n", text,
				ntohs(addrs[i].sin_port), strerror(errno));
			return 1;
		}
		fds[i].fd = fd;
		fds[i].events = POLLIN;
	}

	/* Ready: the counter file appears (atomically, by rename) only now. */
	if ((size_t)snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", count_path) >= sizeof(tmp_path))
		return 1;
	counter = map_counter(tmp_path, 1);
	if (!counter)
		return 1;
	if (rename(tmp_path, count_path) < 0) {
		fprintf(stderr, "connect-bench: rename %s: %s\n", count_path, strerror(errno));
		return 1;
	}

	for (;;) {
		if (poll(fds, (nfds_t)naddr, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "connect-bench server: poll: %s\n", strerror(errno));
			return 1;
		}
		for (i = 0; i < naddr; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			if (udp) {
				if (echo_datagrams(fds[i].fd, counter) < 0)
					return 1;
				continue;
			}
			for (;;) {
				int c = accept4(fds[i].fd, NULL, NULL, SOCK_CLOEXEC);

				if (c < 0) {
					if (errno == EAGAIN || errno == EWOULDBLOCK)
						break;
					if (errno == EINTR || errno == ECONNABORTED)
						continue;
					if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
					    errno == ENOMEM)
						break;
					fprintf(stderr, "connect-bench server: accept: %s\n",
						strerror(errno));
					return 1;
				}
				close(c);
				__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
			}
		}
	}
}

static int one_connect(const struct sockaddr_in *sa)
{
	static const struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		fprintf(stderr, "connect-bench client: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		fprintf(stderr, "connect-bench client: connect: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst)) < 0) {
		fprintf(stderr, "connect-bench client: SO_LINGER: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* One DNS-like exchange on an unconnected UDP socket: a datagram to sa,
 * its echo back, from sa (what recvmsg4 restores). */
static int one_exchange(int fd, const struct sockaddr_in *sa)
{
	char out = 'q', in[16];
	struct sockaddr_in from;
	socklen_t len = sizeof(from);
	ssize_t n;

	if (sendto(fd, &out, 1, 0, (const struct sockaddr *)sa, sizeof(*sa)) != 1) {
		fprintf(stderr, "connect-bench client: sendto: %s\n", strerror(errno));
		return -1;
	}
	n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &len);
	if (n != 1) {
		fprintf(stderr, "connect-bench client: recvfrom: %s\n",
			n < 0 ? strerror(errno) : "not the datagram sent");
		return -1;
	}
	if (from.sin_addr.s_addr != sa->sin_addr.s_addr || from.sin_port != sa->sin_port) {
		char text[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &from.sin_addr, text, sizeof(text));
		fprintf(stderr, "connect-bench client: the reply came from %s:%u, not the address dialed\n",
			text, ntohs(from.sin_port));
		return -1;
	}
	return 0;
}

static int udp_socket(void)
{
	struct timeval timeout = { .tv_sec = 1 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		fprintf(stderr, "connect-bench client: socket: %s\n", strerror(errno));
		return -1;
	}
	/* a lost datagram fails the run instead of hanging it */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
		fprintf(stderr, "connect-bench client: SO_RCVTIMEO: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* One iteration of the client's mode: a TCP connect, or a UDP exchange on
 * the one socket udp_fd. */
static int one_iteration(int udp_fd, const struct sockaddr_in *sa)
{
	return udp_fd >= 0 ? one_exchange(udp_fd, sa) : one_connect(sa);
}

static int run_client(int argc, char **argv)
{
	struct sockaddr_in sa;
	const char *addr = NULL, *count_path = NULL;
	unsigned long port = 0, n = 0, warmup = 0, i, done;
	double seconds = 0;
	volatile uint64_t *counter = NULL;
	uint64_t before = 0, start, elapsed, limit_ns;
	int opt, udp = 0, udp_fd = -1;

	while ((opt = getopt(argc, argv, "ua:p:n:w:t:c:")) != -1) {
		switch (opt) {
		case 'u':
			udp = 1;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'p':
			port = parse_count(optarg, "port");
			break;
		case 'n':
			n = parse_count(optarg, "count");
			break;
		case 'w':
			warmup = parse_count(optarg, "warmup");
			break;
		case 't':
			seconds = strtod(optarg, NULL);
			break;
		case 'c':
			count_path = optarg;
			break;
		default:
			usage();
		}
	}
	if (!addr || n == 0 || parse_addr(addr, port, &sa) < 0)
		usage();
	if (count_path) {
		counter = map_counter(count_path, 0);
		if (!counter)
			return 1;
		before = __atomic_load_n(counter, __ATOMIC_RELAXED);
	}

	if (udp) {
		udp_fd = udp_socket();
		if (udp_fd < 0)
			return 1;
	}
	for (i = 0; i < warmup; i++)
		if (one_iteration(udp_fd, &sa) < 0)
			return 1;

	limit_ns = seconds > 0 ? (uint64_t)(seconds * 1e9) : UINT64_MAX;
	start = now_ns();
	for (done = 0; done < n;) {
		if (one_iteration(udp_fd, &sa) < 0)
			return 1;
		done++;
		/* reading the clock every 64 connects keeps it out of the figure */
		if ((done & 63) == 0 && now_ns() - start >= limit_ns)
			break;
	}
	elapsed = now_ns() - start;

	if (counter) {
		/* the server accepts asynchronously: give it up to 2 s to catch up */
		uint64_t want = before + warmup + done, got = 0;
		int tries;

		for (tries = 0; tries < 200; tries++) {
			got = __atomic_load_n(counter, __ATOMIC_RELAXED);
			if (got >= want)
				break;
			usleep(10000);
		}
		if (got < want) {
			fprintf(stderr,
				"connect-bench client: the server behind %s accepted %llu of %llu "
				"connects: they went elsewhere\n",
				count_path, (unsigned long long)(got - before),
				(unsigned long long)(want - before));
			return 1;
		}
	}

	printf("ns_per_connect=%llu connects=%lu elapsed_ns=%llu\n",
	       (unsigned long long)(elapsed / done), done, (unsigned long long)elapsed);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "server") == 0)
		return run_server(argc - 1, argv + 1);
	if (strcmp(argv[1], "client") == 0)
		return run_client(argc - 1, argv + 1);
	usage();
	return 2;
}
