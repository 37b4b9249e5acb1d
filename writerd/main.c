/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * writerd: the publishing daemon of a libsnap store.
 *
 * Start-up order: open (or create) the store; take the store's lock (one writerd
 * per store); sweep orphans and reclaim what nobody pins (snap_gc); open the
 * inbox, start the publish worker and the reaper, bind the socket; queue the
 * files already in the inbox; log "ready" (and tell systemd or the parent of a
 * daemonised writerd). Then one epoll loop serves signals (signalfd), the inbox
 * (inotify), the socket and the worker's completions.
 *
 * Shutdown (SIGTERM, SIGINT): cancel the running publish (nothing of it
 * remains) or let it finish committing, answer waiting clients, stop the
 * reaper, remove the socket, close the store. The lock goes with the process.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "writerd.h"

static const char usage_text[] =
    "usage: writerd [--store PATH] [--inbox DIR | --no-inbox] [--socket PATH]\n"
    "               [--keep N] [--done-keep N|all] [--allow-uid UID]...\n"
    "               [--allow-gid GID]... [--metrics ADDR:PORT] [--foreground]\n"
    "               [--push URL [--restore] | --follow URL | --mirror DIR]\n"
    "\n"
    "The publishing daemon of a libsnap store (see writerd(8), docs/protocol.md).\n"
    "\n"
    "  --store PATH      the store (created if missing; default $LIBSNAP_STORE,\n"
    "                    else " SNAP_STORE_DEFAULT
    ")\n"
    "  --inbox DIR       watched inbox directory (default STORE/inbox)\n"
    "  --no-inbox        watch no inbox\n"
    "  --done-keep N|all keep the N files published last in the inbox's done/\n"
    "                    (16); all: remove none\n"
    "  --socket PATH     request socket (default STORE/writerd.sock)\n"
    "  --keep N          keep N versions of every dataset (existing and new)\n"
    "  --allow-uid UID   also accept requests from this user (name or number)\n"
    "  --allow-gid GID   also accept requests from processes of this group\n"
    "                    (by default: writerd's own uid and root only)\n"
    "  --reap-interval MS  rescan for draining versions every MS ms (1000)\n"
    "  --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "                    (numeric IPv4, or IPv6 in brackets; port 0: any free)\n"
    "  --foreground      do not detach (for systemd and tests); log to stderr\n"
    "  --push URL        push each dataset's new versions to s3://BUCKET/PREFIX\n"
    "  --restore         with --push: first rebuild what the store lacks from it\n"
    "  --follow URL      follow a primary through s3://BUCKET/PREFIX: adopt every\n"
    "                    version it announces (local publishes are refused)\n"
    "  --mirror DIR      push to directory DIR, and restore from it at start\n"
    "  --push-keep N     versions the announcement keeps (3)\n"
    "  --push-grace S    seconds before unreferenced objects are deleted (600)\n"
    "  --poll-interval MS  between polls of the announcements (1000)\n"
    "  --poll-jitter PCT   up to PCT% more, at random (20)\n"
    "  --transfers N     parallel uploads or downloads (4)\n"
    "  --help, --version\n";

struct opts {
  char *store, *inbox, *socket;
  int no_inbox, foreground;
  uint32_t keep;
  int done_keep;
  unsigned reap_ms;
  struct wd_server_config srv;
  const char *metrics; /* --metrics ADDR:PORT, or NULL */
  struct wd_sync_config sync;
};

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "writerd: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see 'writerd --help')\n");
  return 2;
}

/* Absolute form of @p path (relative to the working directory); malloc'd. */
static char *absolute(const char *path) {
  if (path[0] == '/') return strdup(path);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return NULL;
  char *out;
  if (asprintf(&out, "%s/%s", cwd, path) < 0) return NULL;
  return out;
}

static int parse_id(const char *s, int group, unsigned *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (*s && !*end && !errno && v < UINT_MAX) {
    *out = (unsigned)v;
    return 0;
  }
  if (group) {
    struct group *g = getgrnam(s);
    if (!g) return -1;
    *out = g->gr_gid;
  } else {
    struct passwd *p = getpwnam(s);
    if (!p) return -1;
    *out = p->pw_uid;
  }
  return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o) {
  static const struct option longopts[] = {
      {"store", required_argument, NULL, 's'},
      {"inbox", required_argument, NULL, 'i'},
      {"no-inbox", no_argument, NULL, 'I'},
      {"socket", required_argument, NULL, 'S'},
      {"keep", required_argument, NULL, 'k'},
      {"done-keep", required_argument, NULL, 'd'},
      {"allow-uid", required_argument, NULL, 'u'},
      {"allow-gid", required_argument, NULL, 'g'},
      {"reap-interval", required_argument, NULL, 'r'},
      {"metrics", required_argument, NULL, 'm'},
      {"foreground", no_argument, NULL, 'f'},
      {"push", required_argument, NULL, 'P'},
      {"follow", required_argument, NULL, 'F'},
      {"mirror", required_argument, NULL, 'M'},
      {"restore", no_argument, NULL, 'R'},
      {"push-keep", required_argument, NULL, 'K'},
      {"push-grace", required_argument, NULL, 'G'},
      {"poll-interval", required_argument, NULL, 'p'},
      {"poll-jitter", required_argument, NULL, 'j'},
      {"transfers", required_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {0}};
  int opt;
  unsigned id;
  char *end;
  unsigned long v;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (opt) {
      case 's':
        o->store = optarg;
        break;
      case 'i':
        o->inbox = optarg;
        break;
      case 'I':
        o->no_inbox = 1;
        break;
      case 'S':
        o->socket = optarg;
        break;
      case 'k':
        v = strtoul(optarg, &end, 10); /* digits only: strtoul takes "-1" as 2**64-1 */
        if (!isdigit((unsigned char)*optarg) || *end || v < 1 || v > UINT32_MAX)
          return usage_error("--keep: '%s' is not an integer from 1 to 4294967295",
                             optarg);
        o->keep = (uint32_t)v;
        break;
      case 'd':
        v = strtoul(optarg, &end, 10);
        if (!strcmp(optarg, "all"))
          o->done_keep = -1;
        else if (!isdigit((unsigned char)*optarg) || *end || v > 1000000)
          return usage_error(
              "--done-keep: '%s' is not 'all' or an integer from 0 to 1000000", optarg);
        else
          o->done_keep = (int)v;
        break;
      case 'r':
        v = strtoul(optarg, &end, 10);
        if (!isdigit((unsigned char)*optarg) || *end || v < 1 || v > 3600000)
          return usage_error(
              "--reap-interval: '%s' is not a number of ms from 1 to 3600000", optarg);
        o->reap_ms = (unsigned)v;
        break;
      case 'u':
        if (parse_id(optarg, 0, &id))
          return usage_error("--allow-uid: no user '%s'", optarg);
        if (o->srv.n_allow_uid == WD_MAX_ALLOW)
          return usage_error("--allow-uid: more than %s", "32");
        o->srv.allow_uid[o->srv.n_allow_uid++] = id;
        break;
      case 'g':
        if (parse_id(optarg, 1, &id))
          return usage_error("--allow-gid: no group '%s'", optarg);
        if (o->srv.n_allow_gid == WD_MAX_ALLOW)
          return usage_error("--allow-gid: more than %s", "32");
        o->srv.allow_gid[o->srv.n_allow_gid++] = id;
        break;
      case 'm':
        if (wd_metrics_addr_check(optarg))
          return usage_error(
              "--metrics: '%s' is not ADDR:PORT (a numeric IPv4 address or an IPv6 "
              "address in brackets, a port from 0 to 65535)",
              optarg);
        o->metrics = optarg;
        break;
      case 'f':
        o->foreground = 1;
        break;
      case 'P':
        o->sync.push_url = optarg;
        break;
      case 'F':
        o->sync.follow_url = optarg;
        break;
      case 'M':
        o->sync.mirror_dir = optarg;
        break;
      case 'R':
        o->sync.restore = 1;
        break;
      case 'K':
      case 'G':
      case 'p':
      case 'j':
      case 't': {
        static const struct {
          int opt;
          const char *name;
          unsigned long lo, hi;
        } r[] = {{'K', "--push-keep", 1, 64},
                 {'G', "--push-grace", 0, 86400 * 30},
                 {'p', "--poll-interval", 10, 3600000},
                 {'j', "--poll-jitter", 0, 100},
                 {'t', "--transfers", 1, 64}};
        size_t k = 0;
        while (r[k].opt != opt) k++;
        v = strtoul(optarg, &end, 10);
        if (!isdigit((unsigned char)*optarg) || *end || v < r[k].lo || v > r[k].hi) {
          char m[160];
          snprintf(m, sizeof m, "%s: '%%s' is not an integer from %lu to %lu", r[k].name,
                   r[k].lo, r[k].hi);
          return usage_error(m, optarg);
        }
        unsigned *dst[] = {&o->sync.push_keep, &o->sync.push_grace_s, &o->sync.poll_ms,
                           &o->sync.jitter_pct, &o->sync.parallel};
        *dst[k] = (unsigned)v;
        break;
      }
      case 'h':
        fputs(usage_text, stdout);
        return 0;
      case 'V':
        printf("writerd %s (libsnap %s)\n", WD_VERSION, snap_version_string());
        return 0;
      default:
        return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
  if (o->no_inbox && o->inbox)
    return usage_error("%s", "--inbox and --no-inbox conflict");
  if (!!o->sync.push_url + !!o->sync.follow_url + !!o->sync.mirror_dir > 1)
    return usage_error("%s", "--push, --follow and --mirror conflict: choose one");
  if (o->sync.restore && !o->sync.push_url)
    return usage_error("%s",
                       "--restore needs --push (--mirror and --follow restore anyway)");
  if ((o->sync.push_url && strncmp(o->sync.push_url, "s3://", 5)) ||
      (o->sync.follow_url && strncmp(o->sync.follow_url, "s3://", 5)))
    return usage_error(
        "%s", "--push and --follow take s3://BUCKET[/PREFIX] (a directory: --mirror)");
  return -1; /* go on */
}

/* -------------------------------------------------- daemon and systemd */

/* Detach: the parent waits until the child is ready (exit 0) or fails (the
 * child's exit status). Returns the write end of the readiness pipe in the
 * child; the parent never returns. */
static int daemonize(void) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) {
    perror("writerd: pipe");
    exit(1);
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("writerd: fork");
    exit(1);
  }
  if (pid > 0) {
    close(p[1]);
    char c;
    ssize_t n;
    while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1) exit(0);
    int st;
    if (waitpid(pid, &st, 0) == pid && WIFEXITED(st))
      exit(WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
    exit(1);
  }
  close(p[0]);
  setsid();
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    close(null);
  }
  return p[1];
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify_systemd(const char *msg) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@')) return;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len >= sizeof sa.sun_path) return;
  memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
  }
  close(fd);
}

/* ------------------------------------------------------------- start-up */

/* The start-up sweep: orphans (by the library's sweep, which runs before the
 * handle's first write) and every draining version nobody pins (snap_gc). */
static int startup_gc(snap_store *store) {
  struct snap_orphan *orph;
  size_t n;
  if (snap_orphan_list(store, &orph, &n, NULL)) orph = NULL, n = 0; /* only for the log */
  struct snap_gc_stats st;
  struct snap_error err = {0};
  int rc = snap_gc(store, NULL, 0, NULL, NULL, &st, &err);
  if (rc) {
    fprintf(stderr, "writerd: %s: gc: %s\n", snap_store_path(store), err.message);
    snap_orphan_list_free(orph, n);
    return rc;
  }
  size_t removed = 0;
  char q[600];
  for (size_t i = 0; i < n; i++) {
    /* the sweep removes segments only, and a file still there was not one */
    if (orph[i].kind != SNAP_ORPHAN_SEGMENT || access(orph[i].path, F_OK) == 0) continue;
    removed++;
    wd_log("orphan", "dataset=%s version=%llu action=removed",
           wd_q(q, sizeof q, orph[i].dataset), (unsigned long long)orph[i].version);
  }
  snap_orphan_list_free(orph, n);
  wd_log("sweep",
         "orphans=%zu freed_versions=%llu freed_bytes=%llu draining_versions=%llu "
         "draining_bytes=%llu",
         removed, (unsigned long long)st.freed_versions,
         (unsigned long long)st.freed_bytes, (unsigned long long)st.draining_versions,
         (unsigned long long)st.draining_bytes);
  return 0;
}

/* --keep N: every existing dataset, and the default for new ones. */
static int apply_keep(snap_store *store, uint32_t keep) {
  struct snap_error err = {0};
  int rc = snap_store_set_keep(store, NULL, keep, &err);
  struct snap_dataset_info *ds;
  size_t n = 0;
  if (!rc) rc = snap_dataset_list(store, &ds, &n, &err);
  for (size_t i = 0; !rc && i < n; i++)
    if (ds[i].keep != keep) rc = snap_store_set_keep(store, ds[i].name, keep, &err);
  if (!rc) snap_free(ds);
  if (rc) fprintf(stderr, "writerd: --keep %u: %s\n", keep, err.message);
  return rc;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  struct opts o = {.done_keep = 16,
                   .sync = {.poll_ms = 1000, .jitter_pct = 20, .push_grace_s = 600}};
  int prc = parse_opts(argc, argv, &o);
  if (prc >= 0) return prc;
  const char *store_arg = o.store ? o.store : getenv(SNAP_STORE_ENV);
  if (!store_arg || !*store_arg) store_arg = SNAP_STORE_DEFAULT;
  char *store_path = absolute(store_arg);
  char *sock = NULL, *inbox = NULL;
  if (!store_path || asprintf(&sock, "%s/writerd.sock", store_path) < 0 ||
      (o.socket && !(free(sock), sock = absolute(o.socket))) ||
      (!o.no_inbox && (o.inbox ? !(inbox = absolute(o.inbox))
                               : asprintf(&inbox, "%s/inbox", store_path) < 0))) {
    fprintf(stderr, "writerd: out of memory\n");
    return 1;
  }

  int ready_fd = o.foreground ? -1 : daemonize();
  if (!o.foreground && chdir("/")) {
  }

  /* signals: SIGTERM/SIGINT/SIGHUP through a signalfd, blocked in every thread
   * (threads inherit the mask); SIGPIPE ignored (replies use MSG_NOSIGNAL too) */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGIO, SIG_IGN); /* belt and braces: lease holders set no owner (ingest.c) */
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  int status = 1;
  snap_store *store = NULL;
  struct snap_error err = {0};
  int lockfd = -1, epfd = -1, ifd = -1, inbox_dirfd = -1, wfd = -1;
  struct wd_inbox *in = NULL;
  struct wd_worker *worker = NULL;
  struct wd_reaper *reaper = NULL;
  struct wd_server *srv = NULL;
  struct wd_metrics *metrics = NULL;
  struct wd_sync *sync = NULL;
  char lockpath[PATH_MAX];

  int rc = snap_store_open(store_path, SNAP_CREATE, &store, &err);
  if (rc) {
    fprintf(stderr, "writerd: %s: %s\n", store_path, err.message);
    goto out;
  }
  snprintf(lockpath, sizeof lockpath, "%s/writerd.lock", store_path);
  if (wd_lock_take(lockpath, &lockfd)) goto out;
  if ((rc = wd_lock_write(lockfd, getpid(), sock))) {
    fprintf(stderr, "writerd: %s: %s\n", lockpath, strerror(-rc));
    goto out;
  }
  char q1[600], q2[600], q3[600];
  wd_log("start", "pid=%ld version=%s store=%s socket=%s inbox=%s", (long)getpid(),
         WD_VERSION, wd_q(q1, sizeof q1, store_path), wd_q(q2, sizeof q2, sock),
         inbox ? wd_q(q3, sizeof q3, inbox) : "none");
  if (startup_gc(store)) goto out;
  if (o.keep && apply_keep(store, o.keep)) goto out;

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0 || sfd < 0) {
    perror("writerd: epoll/signalfd");
    goto out;
  }
  if (inbox && wd_inbox_open(inbox, o.done_keep, &in, &ifd, &inbox_dirfd)) goto out;
  if ((rc = wd_worker_start(store, inbox_dirfd, &worker, &wfd)) ||
      (rc = wd_reaper_start(store, o.reap_ms, &reaper))) {
    fprintf(stderr, "writerd: starting threads: %s\n", strerror(-rc));
    goto out;
  }
  o.srv.path = sock;
  o.srv.store_path = store_path;
  if (wd_server_open(&o.srv, store, epfd, worker, reaper, &srv)) goto out;
  if (o.metrics) {
    char bound[80];
    if (wd_metrics_start(store, o.metrics, &metrics, bound, sizeof bound)) goto out;
    wd_log("metrics", "listen=%s", bound);
  }
  if (o.sync.push_url || o.sync.follow_url || o.sync.mirror_dir) {
    if (wd_sync_start(store, reaper, &o.sync, &sync)) goto out;
    wd_server_set_sync(srv, sync);
  }

  static struct wd_ev ev_signal = {WD_EV_SIGNAL}, ev_listen = {WD_EV_LISTEN},
                      ev_inbox = {WD_EV_INBOX}, ev_worker = {WD_EV_WORKER};
  struct epoll_event e = {.events = EPOLLIN};
  e.data.ptr = &ev_signal;
  epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &e);
  e.data.ptr = &ev_listen;
  epoll_ctl(epfd, EPOLL_CTL_ADD, wd_server_fd(srv), &e);
  e.data.ptr = &ev_worker;
  epoll_ctl(epfd, EPOLL_CTL_ADD, wfd, &e);
  if (in) {
    e.data.ptr = &ev_inbox;
    epoll_ctl(epfd, EPOLL_CTL_ADD, ifd, &e);
    wd_inbox_scan(in, worker);
  }

  wd_log("ready", "pid=%ld", (long)getpid());
  notify_systemd("READY=1");
  if (ready_fd >= 0) {
    if (write(ready_fd, "R", 1) < 0) {
    }
    close(ready_fd);
    ready_fd = -1;
  }

  int stop = 0;
  while (!stop) {
    struct epoll_event evs[64];
    int n = epoll_wait(epfd, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      wd_log("error", "op=epoll message=\"%s\"", strerror(errno));
      break;
    }
    for (int i = 0; i < n && !stop; i++) {
      struct wd_ev *ev = evs[i].data.ptr;
      switch (ev->kind) {
        case WD_EV_SIGNAL: {
          struct signalfd_siginfo si;
          while (read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP) {
              wd_log("rescan", "signal=SIGHUP");
              if (in) wd_inbox_scan(in, worker);
              wd_reaper_kick(reaper);
            } else {
              wd_log("shutdown", "signal=%s",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
              stop = 1;
            }
          }
          break;
        }
        case WD_EV_LISTEN:
          wd_server_accept(srv);
          break;
        case WD_EV_INBOX:
          wd_inbox_event(in, worker);
          break;
        case WD_EV_WORKER: {
          struct wd_job *job;
          while ((job = wd_worker_take_done(worker))) {
            int ok = !job->status;
            if (job->source == WD_SRC_INBOX)
              wd_inbox_finish(in, job);
            else
              wd_server_finish(srv, job);
            if (ok) {
              wd_reaper_kick(reaper);
              wd_sync_kick(sync);
            }
          }
          break;
        }
        case WD_EV_CLIENT:
          wd_server_client_event(srv, ev, evs[i].events);
          /* the client may be gone: later events of this batch for it are
           * stale only if its fd was reused within the batch, which epoll
           * cannot report for a closed (deleted) descriptor */
          break;
      }
    }
  }
  status = 0;
  notify_systemd("STOPPING=1");

out:
  wd_metrics_stop(metrics); /* it reads the store */
  /* stop the worker first: it cancels the running ingest (nothing of it
   * remains), then answer whoever waits on a job */
  if (worker) {
    struct wd_job *left;
    wd_worker_stop(worker, &left);
    while (left) {
      struct wd_job *j = left;
      left = j->next;
      j->next = NULL;
      if (j->source == WD_SRC_INBOX)
        wd_inbox_finish(in, j);
      else if (srv)
        wd_server_finish(srv, j);
      else
        wd_job_free(j);
    }
  }
  wd_sync_stop(sync); /* before the reaper: it kicks it */
  int stuck = reaper ? wd_reaper_stop(reaper) : 0;
  wd_server_close(srv);
  wd_inbox_close(in);
  if (epfd >= 0) close(epfd);
  if (sfd >= 0) close(sfd);
  if (!stuck) snap_store_close(store);
  if (status == 0) wd_log("exit", "status=0");
  if (lockfd >= 0) close(lockfd);
  free(store_path);
  free(sock);
  free(inbox);
  return status;
}
