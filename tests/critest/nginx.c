/* A stand-in for the nginx that critest's web server images run (no registry
 * is reachable, so the real image cannot be pulled). critest looks at nginx
 * from outside only: a process named "nginx" (pidof nginx), its PID in
 * /var/run/nginx.pid, "master process" in its /proc/PID/cmdline, and HTTP 200
 * on its port. This master does all of that and leaves the serving to a
 * worker, busybox httpd, as nginx's master leaves it to its workers.
 *
 *   nginx [ARGS...]   port from $NGINX_PORT (default 80), pages from
 *                     $NGINX_ROOT (default /usr/share/nginx/html)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SELF "/usr/sbin/nginx"
/* argv[0]; the arguments follow it, so cmdline reads "nginx: master
 * process nginx -g daemon off;" as with the real one. */
#define TITLE "nginx: master process nginx"

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig) { stop_sig = sig; }

int main(int argc, char **argv) {
    (void)argc;
    /* Re-exec once so that argv[0], and so /proc/self/cmdline, reads as
     * nginx's master does; exec'ing SELF keeps the process name "nginx". */
    if (strcmp(argv[0], TITLE) != 0) {
        argv[0] = TITLE;
        execv(SELF, argv);
        perror("nginx: exec " SELF);
        return 1;
    }

    const char *port = getenv("NGINX_PORT");
    const char *root = getenv("NGINX_ROOT");
    if (!port || !*port)
        port = "80";
    if (!root || !*root)
        root = "/usr/share/nginx/html";

    FILE *f = fopen("/var/run/nginx.pid", "w");
    if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
        perror("nginx: write /var/run/nginx.pid");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);

    pid_t worker = fork();
    if (worker < 0) {
        perror("nginx: fork");
        return 1;
    }
    if (worker == 0) {
        execl("/bin/busybox", "httpd", "-f", "-p", port, "-h", root, (char *)NULL);
        perror("nginx: exec busybox httpd");
        _exit(127);
    }

    /* Reap everything (this may be PID 1); stop the worker when told to
     * stop, and stop when the worker is gone. */
    int forwarded = 0;
    for (;;) {
        if (stop_sig && !forwarded) {
            kill(worker, SIGTERM);
            forwarded = 1;
        }
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (p == worker) {
            if (stop_sig)
                return 0;
            fprintf(stderr, "nginx: worker exited (status %d)\n", status);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
}
