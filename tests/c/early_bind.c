/* A library whose constructor binds a TCP socket, preloaded after libreuse.so
 * (LD_PRELOAD="libreuse.so early_bind.so"): the loader runs this constructor before
 * libreuse's, so the bind reaches the library before its own constructor has run. It
 * prints what the bind got: "early reuseaddr=N". The port comes from EARLY_PORT. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void) {
    const char *p = getenv("EARLY_PORT");
    if (!p) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(p));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    int v = 0;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l);
    printf("early rc=%d reuseaddr=%d\n", rc, v != 0);
    fflush(stdout);
    close(fd);
}
