/* e2e-echo: a tiny static TCP test program for the cluster checks.
 *   e2e-echo serve PORT         accept connections; send "hello from <hostname>\n", then echo
 *                               back what the client sends until it closes (one process per
 *                               connection). Exits 0 on SIGTERM/SIGINT.
 *   e2e-echo connect IP PORT [TIMEOUT_S]
 *                               open a TCP connection to IP:PORT (IPv4/IPv6 literal),
 *                               print the first bytes received (if any), exit 0 when the
 *                               connection was established, 1 otherwise.                 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) { (void)sig; _exit(0); }

static int serve(int port) {
  int s = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
  if (s < 0) { perror("socket"); return 1; }
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* also IPv4 */
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_any;
  a.sin6_port = htons((unsigned short)port);
  if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) { perror("bind/listen"); return 1; }
  signal(SIGCHLD, SIG_IGN); /* children are reaped automatically */
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  fprintf(stderr, "e2e-echo: serving on port %d as %s\n", port, host);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) { if (errno == EINTR) continue; perror("accept"); return 1; }
    pid_t p = fork();
    if (p == 0) {
      close(s);
      char buf[4096];
      int n = snprintf(buf, sizeof buf, "hello from %s\n", host);
      if (write(c, buf, (size_t)n) < 0) _exit(1);
      ssize_t r;
      while ((r = read(c, buf, sizeof buf)) > 0)
        if (write(c, buf, (size_t)r) != r) break;
      _exit(0);
    }
    close(c);
  }
}

static int connect_to(const char *host, const char *port, int timeout_s) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((unsigned short)atoi(port));
    len = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((unsigned short)atoi(port));
    len = sizeof *a6;
  } else {
    fprintf(stderr, "e2e-echo: %s: not an IP address (no name resolution in this tool)\n", host);
    return 2;
  }
  alarm((unsigned)timeout_s); /* SIGALRM ends a connect that hangs */
  int c = socket(ss.ss_family, SOCK_STREAM, 0);
  if (c < 0) { perror("socket"); return 1; }
  if (connect(c, (struct sockaddr *)&ss, len) != 0) {
    fprintf(stderr, "e2e-echo: connect %s:%s: %s\n", host, port, strerror(errno));
    return 1;
  }
  struct pollfd pf = {c, POLLIN, 0};
  char buf[512];
  if (poll(&pf, 1, 1000) > 0) {
    ssize_t r = read(c, buf, sizeof buf - 1);
    if (r > 0) { buf[r] = 0; fputs(buf, stdout); }
  }
  printf("connected to %s:%s\n", host, port);
  close(c);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "connect"))
    return connect_to(argv[2], argv[3], argc == 5 ? atoi(argv[4]) : 5);
  fprintf(stderr, "usage: e2e-echo serve PORT | e2e-echo connect HOST PORT [TIMEOUT_S]\n");
  return 2;
}
