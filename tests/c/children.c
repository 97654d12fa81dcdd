/* Processes a server makes, under LD_PRELOAD: every child's bind must get the library's
 * options, however it was made, and so must a bind made from a signal handler.
 *
 *   children all PORT PORT2     runs every kind below, one line each:
 *                                 KIND rc=R errno=E reuseaddr=0|1
 *                               fork, vfork (bind in the vfork child itself, before _exit),
 *                               vfork+exec, posix_spawn, posix_spawnp, exec-chain(3)
 *                               (fork, then exec itself three times over), system (through
 *                               /bin/sh -c), and:
 *                                 signal main=N handler=N failed=N without=N
 *                               the main thread binds PORT over and over while SIGALRM,
 *                               every millisecond, binds PORT2 from its handler (socket,
 *                               bind, getsockopt and close are async-signal-safe)
 *   children bind PORT KIND     bind 127.0.0.1:PORT and print the KIND line
 *   children chain N PORT       exec itself N more times, then bind as exec-chain
 *
 * Every wait is bounded: a child that does not end within 20 s is killed and reported.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static const char *self;

/* socket + bind to 127.0.0.1:port + SO_REUSEADDR as the kernel has it + close. Only
 * async-signal-safe calls. Result: rc, errno, reuseaddr. */
struct result { int rc, err, reuse; };

static struct result bind_once(int port) {
    struct result r = {-1, 0, -1};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { r.err = errno; return r; }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r.rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    r.err = r.rc == 0 ? 0 : errno;
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l) == 0) r.reuse = v != 0;
    close(fd);
    return r;
}

static void print_result(const char *kind, struct result r) {
    printf("%s rc=%d errno=%d reuseaddr=%d\n", kind, r.rc, r.err, r.reuse);
    fflush(stdout);
}

/* Waits for pid up to 20 s; kills it after that. Returns its wait status, or -1. */
static int wait_bounded(pid_t pid) {
    for (int i = 0; i < 2000; i++) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) return st;
        if (w < 0 && errno != EINTR) return -1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void check_exit(const char *kind, int st) {
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        printf("%s child failed (status %d)\n", kind, st);
    fflush(stdout);
}

static void run_fork(int port) {
    pid_t pid = fork();
    if (pid == 0) {
        print_result("fork", bind_once(port));
        _exit(0);
    }
    check_exit("fork", pid < 0 ? -1 : wait_bounded(pid));
}

/* The vfork child shares the parent's memory and may not return or use stdio: it binds,
 * then hands the result back in its exit status. */
static void run_vfork(int port) {
    pid_t pid = vfork();
    if (pid == 0) {
        struct result r = bind_once(port);
        _exit(r.rc == 0 ? (r.reuse == 1 ? 10 : 11) : 12);
    }
    int st = pid < 0 ? -1 : wait_bounded(pid);
    int code = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 10 || code == 11) printf("vfork rc=0 errno=0 reuseaddr=%d\n", code == 10);
    else if (code == 12) printf("vfork rc=-1 errno=? reuseaddr=?\n");
    else printf("vfork child failed (status %d)\n", st);
    fflush(stdout);
}

static void run_vfork_exec(const char *port) {
    char *argv[] = {(char *)self, "bind", (char *)port, "vfork+exec", NULL};
    pid_t pid = vfork();
    if (pid == 0) {
        execve(self, argv, environ);
        _exit(127);
    }
    check_exit("vfork+exec", pid < 0 ? -1 : wait_bounded(pid));
}

static void run_spawn(const char *port, int use_path) {
    const char *kind = use_path ? "posix_spawnp" : "posix_spawn";
    char *argv[] = {(char *)self, "bind", (char *)port, (char *)kind, NULL};
    pid_t pid;
    int e = use_path ? posix_spawnp(&pid, self, NULL, NULL, argv, environ)
                     : posix_spawn(&pid, self, NULL, NULL, argv, environ);
    if (e != 0) {
        printf("%s failed: %s\n", kind, strerror(e));
        return;
    }
    check_exit(kind, wait_bounded(pid));
}

static void run_chain(const char *port) {
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {(char *)self, "chain", "3", (char *)port, NULL};
        execv(self, argv);
        _exit(127);
    }
    check_exit("exec-chain", pid < 0 ? -1 : wait_bounded(pid));
}

static void run_system(const char *port) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' bind %s system", self, port);
    int st = system(cmd);
    check_exit("system", st);
}

/* The signal case. */
static volatile sig_atomic_t handler_port, handler_binds, handler_failed, handler_without;

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    struct result r = bind_once(handler_port);
    handler_binds++;
    if (r.rc != 0) handler_failed++;
    if (r.reuse != 1) handler_without++;
    errno = saved;
}

static void run_signal(int port, int port2) {
    handler_port = port2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: an interrupted call sees EINTR, as in many servers */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int main_binds = 0, failed = 0, without = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* At most 20000 binds or 2 s, and at least until the handler has run 200 times (or 10 s
     * have passed, on a machine too loaded to deliver the timer). */
    for (;;) {
        struct result r = bind_once(port);
        main_binds++;
        if (r.rc != 0) failed++;
        if (r.reuse != 1) without++;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double s = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (s > 10 || ((main_binds >= 20000 || s > 2) && handler_binds >= 200)) break;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    printf("signal main=%d handler=%d failed=%d without=%d\n", main_binds, (int)handler_binds,
           failed + (int)handler_failed, without + (int)handler_without);
    fflush(stdout);
}

int main(int argc, char **argv) {
    self = argv[0];
    if (argc >= 4 && strcmp(argv[1], "bind") == 0) {
        print_result(argv[3], bind_once(atoi(argv[2])));
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "chain") == 0) {
        int n = atoi(argv[2]);
        if (n <= 0) {
            print_result("exec-chain(3)", bind_once(atoi(argv[3])));
            return 0;
        }
        char next[16];
        snprintf(next, sizeof next, "%d", n - 1);
        char *av[] = {(char *)self, "chain", next, argv[3], NULL};
        execv(self, av);
        perror("execv");
        return 127;
    }
    if (argc >= 4 && strcmp(argv[1], "all") == 0) {
        if (self[0] != '/') {
            fprintf(stderr, "run me by an absolute path\n");
            return 2;
        }
        int port = atoi(argv[2]);
        run_fork(port);
        run_vfork(port);
        run_vfork_exec(argv[2]);
        run_spawn(argv[2], 0);
        run_spawn(argv[2], 1);
        run_chain(argv[2]);
        run_system(argv[2]);
        run_signal(port, atoi(argv[3]));
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of children.c\n");
    return 2;
}
