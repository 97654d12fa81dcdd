/* Another interposer of socket() and bind(), preloaded after libreuse.so: it passes each
 * call on to the next definition (dlsym(RTLD_NEXT)), as interposers do. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    int (*next)(int, int, int) = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    return next(domain, type, protocol);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    int (*next)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    return next(fd, addr, len);
}
