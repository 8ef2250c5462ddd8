/*
 * tcp_listener: the smallest daemon the benchmarks manage (a few hundred KB of RSS).
 *
 *   tcp_listener PORT [HEALTH_FILE]
 *
 * Listens on 127.0.0.1:PORT, one connection at a time. For every connection it
 * reads the request (up to a blank line, EOF or 1 s), then answers
 *   "HTTP/1.0 200 OK"                  while HEALTH_FILE exists (or none was given),
 *   "HTTP/1.0 503 Service Unavailable" once HEALTH_FILE is removed,
 * and closes. A TCP probe (connect, close) is therefore answered too. SIGTERM and
 * SIGINT end it; SIGPIPE is ignored (a TCP probe closes before the answer).
 *
 * Built by bench/harness/listener.py: gcc -O2 -s -static (falls back to dynamic).
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char OK[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
static const char BAD[] =
    "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nbad!\n";

static void read_request(int fd) {
    char buf[2048];
    size_t used = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (used < sizeof(buf) - 1) {
        if (poll(&p, 1, 1000) <= 0) return;
        ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
        if (n <= 0) return;
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) return;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [HEALTH_FILE]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *health = argc > 2 ? argv[2] : NULL;
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("bind");
        return 1;
    }
    if (listen(s, 64) < 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            perror("accept");
            return 1;
        }
        read_request(c);
        int healthy = health == NULL || access(health, F_OK) == 0;
        const char *answer = healthy ? OK : BAD;
        ssize_t ignored = write(c, answer, strlen(answer));
        (void)ignored;
        close(c);
    }
}
