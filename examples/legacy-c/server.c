/*
 * A legacy C server as they were written for decades: socket, bind, listen, accept, no
 * SO_REUSEADDR. It answers each connection with one HTTP/1.0 response and closes it first,
 * which leaves TIME_WAIT sockets on its port; restarted within about 60 s, its bind fails
 * with EADDRINUSE. Run under reuse, it restarts at once, unchanged and unrebuilt.
 *
 *   cc -O2 -o server server.c
 *   PORT=8080 reuse run -- ./server
 *
 * Environment: PORT (default 8080), HOST (an IPv4 address, default 127.0.0.1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads the request head up to its blank line (or 8 KiB), so that closing never finds
 * unread data, which would reset the connection instead of closing it. */
static void read_head(int c)
{
    char buf[8192];
    size_t used = 0;
    while (used < sizeof buf - 1) {
        ssize_t n = read(c, buf + used, sizeof buf - 1 - used);
        if (n <= 0)
            return;
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return;
    }
}

int main(void)
{
    const char *host = getenv("HOST") ? getenv("HOST") : "127.0.0.1";
    const char *port_s = getenv("PORT") ? getenv("PORT") : "8080";
    int port = atoi(port_s);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "server: invalid PORT %s\n", port_s);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "server: invalid HOST %s\n", host);
        return 2;
    }
    /* No setsockopt(SO_REUSEADDR) here: that is the point. */
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("bind");
        return 1;
    }
    if (listen(s, 64) < 0) {
        perror("listen");
        return 1;
    }
    fprintf(stderr, "listening on %s:%d (pid %d)\n", host, port, (int)getpid());

    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            perror("accept");
            return 1;
        }
        read_head(c);
        char reply[128];
        int n = snprintf(reply, sizeof reply,
                         "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok pid=%d\n",
                         (int)getpid());
        if (n > 0 && write(c, reply, (size_t)n) < 0)
            perror("write");
        close(c);
    }
}
