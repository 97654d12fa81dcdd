/* A small C program the library tests run under LD_PRELOAD: it makes the libc calls a
 * server makes and prints what the kernel then says about its sockets.
 *
 *   probe bind 4|6|6rfc2133 tcp|udp ADDR PORT [loaded]
 *                                      socket+bind, print rc, errno and the options; with
 *                                      `loaded`, add loaded=0|1: whether /proc/self/maps
 *                                      shows libreuse mapped into this process; 6rfc2133
 *                                      binds IPv6 with the 24-byte sockaddr_in6 of RFC 2133
 *                                      (no sin6_scope_id), which Linux still accepts
 *   probe unix PATH                    bind a Unix socket, print its SO_REUSEADDR
 *   probe serve 4|6 ADDR PORT          a legacy server: no SO_REUSEADDR, answers HTTP/1.0
 *                                      and closes first, until killed
 *   probe threads N PORT0              N threads bind PORT0+i at once; print the failures
 *   probe dupstale PORT                a TCP socket dup()ed onto a number glibc freed inside
 *                                      fclose(), bound
 *   probe closed2 FILE PORT            close stderr, open FILE as descriptor 2, bind PORT
 *   probe sigfirst PORT                the process's first socket+bind+close, in a signal handler
 *   probe dup3 PORT                    a UDP socket dup3()ed over an open TCP socket, bound
 *   probe dup2 PORT                    a UDP socket dup2()ed over a closed TCP slot, bound
 *   probe listen 4 ADDR PORT           bind+listen and wait to be killed
 *   probe forkserve 4 ADDR PORT        bind+listen, fork a worker that serves on the same
 *                                      socket; print the worker's PID; wait
 *   probe bigserve 4 ADDR PORT BYTES   a legacy server that, for each connection, writes
 *                                      BYTES bytes (byte i is i % 251) without reading, and
 *                                      closes at once; until killed
 *   probe sock 4|6|4unspec tcp|udp|mptcp ADDR PORT
 *                                      socket+bind, then print what the descriptor is now:
 *                                      rc errno type listening port reuseaddr reuseport
 *                                      linger; 4unspec binds with sin_family AF_UNSPEC;
 *                                      PROBE_SCOPE sets sin6_scope_id, PROBE_STAY_MS stays
 *                                      that long after printing
 *   probe badaddr PORT                 binds with bad address pointers and lengths (a
 *                                      pointer of 1; IPv6 addresses ending at a page's end
 *                                      with lengths 24, 28, 1000; a NULL address); prints
 *                                      each rc and errno on one line
 *   probe dupfail PORT                 failed dup2/dup3 onto a TCP socket's number (bad
 *                                      flags, a closed source), then binds it
 *   probe deepbind LIB lazy|now PORT   dlopen LIB (tests/c/deep.c) with RTLD_DEEPBIND and
 *                                      let it bind PORT; print rc, its socket's SO_REUSEADDR
 *                                      and whether its own dup() stayed its own
 *   probe noprv PROGRAM ARG...         runs PROGRAM where process_vm_readv fails (seccomp)
 *   probe noauxv PROGRAM ARG...        runs PROGRAM where prctl(PR_GET_AUXV) fails with
 *                                      EINVAL, as on kernels before 6.4 (seccomp)
 *   probe exec NAME=VALUE... -- PROGRAM ARG...
 *                                      execs PROGRAM with exactly those environment entries
 *                                      (duplicates kept) and PATH
 *   probe stalepacket                  a TCP socket's number freed by a raw close and taken
 *                                      by a packet socket (root), bound with sa_family
 *                                      AF_INET6 and 16 bytes: rc errno reuseaddr
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int make_addr(int fam, const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (fam == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -1;
        *len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -1;
        *len = sizeof *a;
    }
    return 0;
}

static int opt(int fd, int name) {
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, name, &v, &l);
    return v;
}

static void print_opts_then(int fd, const char *tail) {
    struct linger lg = {0, 0};
    socklen_t l = sizeof lg;
    getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l);
    printf("reuseaddr=%d reuseport=%d linger=%d,%d%s\n", opt(fd, SO_REUSEADDR) != 0,
           opt(fd, SO_REUSEPORT) != 0, lg.l_onoff != 0, lg.l_linger, tail);
}

static void print_opts(int fd) { print_opts_then(fd, ""); }

/* Whether the loader mapped libreuse into this process (it may map it and the library still
 * stay inert, as in secure execution). */
static int libreuse_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    if (!f) return 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, "libreuse") != NULL;
    fclose(f);
    return found;
}

static int do_bind(int fam, int rfc2133, const char *proto, const char *host, int port,
                   int show_loaded) {
    int type = strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(fam == 4 ? AF_INET : AF_INET6, type | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); return 2; }
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(fam, host, port, &ss, &len)) { fprintf(stderr, "bad address\n"); return 2; }
    if (rfc2133) len = 24;
    /* errno must come back as the kernel left it: untouched by a successful bind. */
    errno = 4242;
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    printf("rc=%d errno=%d ", rc, e);
    print_opts_then(fd, show_loaded ? (libreuse_mapped() ? " loaded=1" : " loaded=0") : "");
    close(fd);
    return 0;
}

static int do_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    unlink(path);
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    printf("rc=%d ", rc);
    print_opts(fd);
    close(fd);
    unlink(path);
    return 0;
}

/* A listening TCP socket, as a server without SO_REUSEADDR makes one; on failure, the exit
 * status the caller returns (98 for a failed bind, with errno on stderr). */
static int listen_on(int fam, const char *host, int port, int *status) {
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(fam == 4 ? AF_INET : AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(fam, host, port, &ss, &len)) { *status = 2; return -1; }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        fprintf(stderr, "bind: %s (errno %d)\n", strerror(errno), errno);
        *status = 98;
        return -1;
    }
    if (listen(fd, 64) != 0) { perror("listen"); *status = 3; return -1; }
    return fd;
}

static int do_serve(int fam, const char *host, int port, int mode) {
    int status;
    int fd = listen_on(fam, host, port, &status);
    if (fd < 0) return status;
    if (mode == 2) {
        /* A pre-forking server: the worker inherits the listening socket, and outlives a
         * master killed with SIGKILL. */
        pid_t w = fork();
        if (w == 0) mode = 0;
        else {
            printf("worker=%d\n", (int)w);
            fflush(stdout);
            for (;;) pause();
        }
    }
    printf("ready\n");
    fflush(stdout);
    if (mode == 1) for (;;) pause();
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        char buf[1024];
        (void)read(c, buf, sizeof buf);
        const char *r = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        (void)write(c, r, strlen(r));
        close(c); /* the server closes first: TIME_WAIT stays on its port */
    }
}

/* For each connection: BYTES bytes, then close at once, the request never read (so an
 * ordinary close sends FIN, not a reset for unread data). */
static int do_bigserve(int fam, const char *host, int port, long bytes) {
    int status;
    int fd = listen_on(fam, host, port, &status);
    if (fd < 0) return status;
    static unsigned char chunk[251 * 256];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (unsigned char)(i % 251);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        long sent = 0;
        while (sent < bytes) {
            size_t off = (size_t)(sent % 251);
            size_t n = sizeof chunk - off;
            if ((long)n > bytes - sent) n = (size_t)(bytes - sent);
            ssize_t w = write(c, chunk + off, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            sent += w;
        }
        close(c);
    }
}

struct job { int port; int failed; int reuse; };

static void *bind_one(void *p) {
    struct job *j = p;
    for (int round = 0; round < 50; round++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(j->port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) j->failed++;
        if (opt(fd, SO_REUSEADDR) == 0) j->reuse = 0;
        close(fd);
    }
    return NULL;
}

static int do_threads(int n, int port0) {
    pthread_t t[256];
    struct job j[256];
    if (n > 256) n = 256;
    for (int i = 0; i < n; i++) {
        j[i] = (struct job){port0 + i, 0, 1};
        pthread_create(&t[i], NULL, bind_one, &j[i]);
    }
    int failed = 0, without = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        failed += j[i].failed;
        without += !j[i].reuse;
    }
    printf("threads=%d failed=%d without_reuseaddr=%d\n", n, failed, without);
    return 0;
}

/* Binds fd to 127.0.0.1:port and prints rc and the options the socket then has. */
static int bind_loopback_and_print(int fd, int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    make_addr(4, "127.0.0.1", port, &ss, &len);
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    printf("rc=%d ", rc);
    print_opts(fd);
    return 0;
}

/* A UDP socket moved by dup2() onto a descriptor number a TCP socket used to have: the
 * library must see it as UDP (and leave it alone by default). */
static int do_dup2(int port) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    close(tcp);
    if (dup2(udp, tcp) != tcp) { perror("dup2"); return 2; }
    close(udp);
    return bind_loopback_and_print(tcp, port);
}

/* The process's very first socket(), bind() and close() made inside a signal handler, before
 * the library has looked up anything (it finds libc's functions on first use, without a lock
 * or an allocation): the bind gets its option and errno comes back as the handler found it. */
static volatile int first_rc = -2, first_errno = -2, first_reuseaddr = -2;
static int first_port;
static void first_in_handler(int sig) {
    (void)sig;
    errno = 4242;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    make_addr(4, "127.0.0.1", first_port, &ss, &len);
    first_rc = bind(fd, (struct sockaddr *)&ss, len);
    first_errno = errno;
    first_reuseaddr = opt(fd, SO_REUSEADDR) != 0;
    close(fd);
}
static int do_sigfirst(int port) {
    first_port = port;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = first_in_handler;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("rc=%d errno=%d reuseaddr=%d\n", first_rc, first_errno, first_reuseaddr);
    return 0;
}

/* The same with dup3(): a UDP socket moved over a TCP socket's number (open, so dup3 closes
 * it) with O_CLOEXEC: the library must see UDP there. */
static int do_dup3(int port) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    if (dup3(udp, tcp, O_CLOEXEC) != tcp) { perror("dup3"); return 2; }
    close(udp);
    return bind_loopback_and_print(tcp, port);
}

/* A number freed behind libc's back (fclose of an fdopen()ed UDP socket closes it inside
 * glibc, not through close()) and taken again by dup() of a TCP socket: the library must
 * see TCP there. */
static int do_dup_stale(int port) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    FILE *f = fdopen(udp, "r+");
    if (!f) { perror("fdopen"); return 2; }
    fclose(f);
    int d = dup(tcp);
    if (d != udp) { fprintf(stderr, "dup gave %d, not %d\n", d, udp); return 2; }
    close(tcp);
    return bind_loopback_and_print(d, port);
}

/* The table still says TCP for a number a raw close freed; a packet socket (made by a raw
 * system call, so the hooks never see it) takes the number and binds with sa_family AF_INET6
 * and 16 bytes, which packet sockets accept whatever the family. */
#ifndef ETH_P_ALL
#define ETH_P_ALL 0x0003 /* <linux/if_ether.h>, which musl-gcc does not see */
#endif
static int do_stalepacket(void) {
    int t = socket(AF_INET, SOCK_STREAM, 0);
    syscall(SYS_close, t);
    int p = syscall(SYS_socket, AF_PACKET, SOCK_PACKET, htons(ETH_P_ALL));
    if (p < 0) { printf("socket errno=%d\n", errno); return 0; }
    if (p != t) { printf("number %d, not %d\n", p, t); return 2; }
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_INET6;
    strcpy(sa.sa_data, "lo");
    errno = 4242;
    int rc = bind(p, &sa, sizeof sa);
    printf("rc=%d errno=%d reuseaddr=%d\n", rc, errno, opt(p, SO_REUSEADDR));
    return 0;
}

/* A daemon that closed its stderr and got descriptor 2 back for a data file, then binds a
 * port that is taken (the library would have a warning to write). */
static int do_closed2(const char *file, int port) {
    close(2);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd != 2) { printf("open gave %d\n", fd); return 2; }
    return do_bind(4, 0, "tcp", "127.0.0.1", port, 0);
}

#include <sys/mman.h>
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

static int do_sock(const char *fam, const char *proto, const char *host, int port) {
    int v6 = strcmp(fam, "6") == 0;
    int type = strcmp(proto, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM;
    int protocol = strcmp(proto, "mptcp") == 0 ? IPPROTO_MPTCP : 0;
    int fd = socket(v6 ? AF_INET6 : AF_INET, type, protocol);
    if (fd < 0) { printf("socket errno=%d\n", errno); return 3; }
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(v6 ? 6 : 4, host, port, &ss, &len)) return 2;
    if (strcmp(fam, "4unspec") == 0) ((struct sockaddr_in *)&ss)->sin_family = AF_UNSPEC;
    /* PROBE_SCOPE: an IPv6 scope id, as a program that leaves sockaddr_in6 unzeroed has. */
    if (v6 && getenv("PROBE_SCOPE")) ((struct sockaddr_in6 *)&ss)->sin6_scope_id = atoi(getenv("PROBE_SCOPE"));
    /* PROBE_LINGER_MS: stay a while after the bind, as a server instance does. */
    int stay = getenv("PROBE_STAY_MS") ? atoi(getenv("PROBE_STAY_MS")) : 0;
    errno = 4242;
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    int gport = -1;
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
        gport = ntohs(((struct sockaddr_in *)&got)->sin_port);
    struct linger lg = {0, 0};
    socklen_t l = sizeof lg;
    getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l);
    printf("rc=%d errno=%d type=%d listening=%d port=%d reuseaddr=%d reuseport=%d linger=%d,%d\n", rc, e,
           opt(fd, SO_TYPE), opt(fd, SO_ACCEPTCONN), gport, opt(fd, SO_REUSEADDR) != 0,
           opt(fd, SO_REUSEPORT) != 0, lg.l_onoff != 0, lg.l_linger);
    fflush(stdout);
    if (stay > 0) usleep(stay * 1000);
    return 0;
}

static void one_bad(int fd, const void *addr, socklen_t len) {
    errno = 4242;
    int rc = bind(fd, (const struct sockaddr *)addr, len);
    printf(" %d/%d", rc, rc == 0 ? 0 : errno);
}

static int do_badaddr(int port) {
    long page = sysconf(_SC_PAGESIZE);
    /* Two pages, the second one unmapped: an address placed at the end of the first is
     * followed by nothing readable. */
    char *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED) { perror("mmap"); return 2; }
    munmap(two + page, page);
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(port);
    a6.sin6_addr = in6addr_loopback;
    printf("badaddr");
    int f4 = socket(AF_INET, SOCK_STREAM, 0);
    one_bad(f4, (void *)1, 16);
    one_bad(f4, NULL, 16);
    close(f4);
    socklen_t lens[] = {24, 28, 1000};
    for (int i = 0; i < 3; i++) {
        int f6 = socket(AF_INET6, SOCK_STREAM, 0);
        /* The address's first 24 bytes end exactly at the unmapped page. */
        char *at = two + page - 24;
        memcpy(at, &a6, 24);
        one_bad(f6, at, lens[i]);
        close(f6);
    }
    printf("\n");
    return 0;
}

static int do_dupfail(int port) {
    /* dup3 with bad flags (EINVAL) from a UDP socket onto a TCP one. */
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int r = dup3(udp, tcp, 0x7fff0000);
    printf("dup3=%d/%d ", r, errno);
    bind_loopback_and_print(tcp, port);
    close(tcp);
    close(udp);
    /* dup2 from a number whose UDP socket was closed behind libc's back (EBADF). */
    tcp = socket(AF_INET, SOCK_STREAM, 0);
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    syscall(SYS_close, udp);
    r = dup2(udp, tcp);
    printf("dup2=%d/%d ", r, errno);
    bind_loopback_and_print(tcp, port);
    return 0;
}

#include <dlfcn.h>

static int do_deepbind(const char *lib, const char *mode, int port) {
#ifndef RTLD_DEEPBIND
    (void)lib; (void)mode; (void)port;
    fprintf(stderr, "no RTLD_DEEPBIND in this C library\n");
    return 2;
#else
    int flags = (strcmp(mode, "now") == 0 ? RTLD_NOW : RTLD_LAZY) | RTLD_DEEPBIND;
    void *h = dlopen(lib, flags);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    int (*f)(int, int *, int *) = (int (*)(int, int *, int *))dlsym(h, "deep_bind");
    if (!f) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 2; }
    int reuseaddr = -1, own_dup = -1;
    int rc = f(port, &reuseaddr, &own_dup);
    printf("rc=%d reuseaddr=%d own_dup=%d\n", rc, reuseaddr, own_dup);
    return 0;
#endif
}

#if __has_include(<linux/seccomp.h>)
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#define HAVE_SECCOMP 1
#endif

#ifdef HAVE_SECCOMP
/* Runs PROGRAM under the seccomp filter F (N instructions). */
static int exec_filtered(char **argv, struct sock_filter *f, unsigned short n) {
    struct sock_fprog prog = {n, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        return 2;
    }
    execvp(argv[0], argv);
    perror("execvp");
    return 127;
}
#endif

/* Runs PROGRAM with a seccomp filter that refuses process_vm_readv with EPERM, as some
 * container profiles do. */
static int do_noprv(char **argv) {
#ifndef HAVE_SECCOMP
    (void)argv;
    fprintf(stderr, "no seccomp headers here\n");
    return 2;
#else
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    return exec_filtered(argv, f, sizeof f / sizeof f[0]);
#endif
}

#ifndef PR_GET_AUXV
#define PR_GET_AUXV 0x41555856
#endif

/* Runs PROGRAM with a seccomp filter under which prctl(PR_GET_AUXV, ...) fails with
 * EINVAL, as it does on kernels before 6.4; every other call is allowed. */
static int do_noauxv(char **argv) {
#ifndef HAVE_SECCOMP
    (void)argv;
    fprintf(stderr, "no seccomp headers here\n");
    return 2;
#else
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_GET_AUXV, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    return exec_filtered(argv, f, sizeof f / sizeof f[0]);
#endif
}

static int do_exec(int argc, char **argv) {
    char *env[256];
    int n = 0, i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0 && n < 254; i++) env[n++] = argv[i];
    if (i >= argc - 1) { fprintf(stderr, "probe exec: no program\n"); return 2; }
    const char *path = getenv("PATH");
    static char pathvar[4096];
    snprintf(pathvar, sizeof pathvar, "PATH=%s", path ? path : "/usr/bin:/bin");
    env[n++] = pathvar;
    env[n] = NULL;
    execvpe(argv[i + 1], argv + i + 1, env);
    perror("execvpe");
    return 127;
}

int main(int argc, char **argv) {
    if (argc >= 6 && strcmp(argv[1], "sock") == 0) return do_sock(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc >= 3 && strcmp(argv[1], "badaddr") == 0) return do_badaddr(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "dupfail") == 0) return do_dupfail(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "exec") == 0) return do_exec(argc, argv);
    if (argc >= 3 && strcmp(argv[1], "noprv") == 0) return do_noprv(argv + 2);
    if (argc >= 3 && strcmp(argv[1], "noauxv") == 0) return do_noauxv(argv + 2);
    if (argc >= 5 && strcmp(argv[1], "deepbind") == 0) return do_deepbind(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 6 && strcmp(argv[1], "bind") == 0)
        return do_bind(atoi(argv[2]), strcmp(argv[2], "6rfc2133") == 0, argv[3], argv[4], atoi(argv[5]),
                       argc >= 7 && strcmp(argv[6], "loaded") == 0);
    if (argc >= 3 && strcmp(argv[1], "unix") == 0) return do_unix(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "serve") == 0)
        return do_serve(atoi(argv[2]), argv[3], atoi(argv[4]), 0);
    if (argc >= 5 && strcmp(argv[1], "listen") == 0)
        return do_serve(atoi(argv[2]), argv[3], atoi(argv[4]), 1);
    if (argc >= 5 && strcmp(argv[1], "forkserve") == 0)
        return do_serve(atoi(argv[2]), argv[3], atoi(argv[4]), 2);
    if (argc >= 6 && strcmp(argv[1], "bigserve") == 0)
        return do_bigserve(atoi(argv[2]), argv[3], atoi(argv[4]), atol(argv[5]));
    if (argc >= 4 && strcmp(argv[1], "threads") == 0) return do_threads(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "dup2") == 0) return do_dup2(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "dup3") == 0) return do_dup3(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "sigfirst") == 0) return do_sigfirst(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "dupstale") == 0) return do_dup_stale(atoi(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "stalepacket") == 0) return do_stalepacket();
    if (argc >= 4 && strcmp(argv[1], "closed2") == 0) return do_closed2(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: see the comment at the top of probe.c\n");
    return 2;
}
