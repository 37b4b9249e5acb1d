/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl: operations on a libsnap store. `snapctl [--store PATH] COMMAND [ARGS]`.
 * Each command lives in its own cmd_*.c file and uses libsnap's public API only.
 * Exit status: 0 success, 1 operational error, 2 usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapctl.h"

static const struct ctl_command *const commands[] = {
    &ctl_cmd_init,    &ctl_cmd_list,    &ctl_cmd_info,     &ctl_cmd_readers,
    &ctl_cmd_gc,      &ctl_cmd_publish, &ctl_cmd_rollback, &ctl_cmd_drop,
    &ctl_cmd_compact, &ctl_cmd_verify,  &ctl_cmd_export,   &ctl_cmd_doctor,
    &ctl_cmd_push,    &ctl_cmd_pull,    &ctl_cmd_unfollow,
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f) {
  fprintf(f,
          "usage: snapctl [--store PATH] COMMAND [ARGS...]\n"
          "\n"
          "Operate a libsnap store (default: $%s, else %s).\n"
          "\n"
          "Commands:\n",
          SNAP_STORE_ENV, SNAP_STORE_DEFAULT);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(f,
          "\n"
          "Options:\n"
          "  -s, --store PATH  the store directory\n"
          "  -h, --help        this help; 'snapctl COMMAND --help' for a command\n"
          "  -V, --version     print the versions of snapctl and libsnap\n"
          "\n"
          "Exit status: 0 success, 1 operational error, 2 usage error.\n");
}

/*
 * Root on a store another user owns acts as that user. The owner controls every
 * name in the store directory, and LMDB opens its files by name, following
 * links: as root, a link planted there could make snapctl write any file
 * (libsnap refuses links it sees, but an owner can race that check), and files
 * root creates in the store (a lock file, a segment) would be root's, which the
 * writer then cannot use. `init --huge` is the exception: it must mount as root
 * and makes the store as the owner itself. Returns 0 or an exit status.
 */
static int act_as_owner(const char *path) {
  struct stat st;
  if (geteuid() != 0 || stat(path, &st) || !S_ISDIR(st.st_mode) || st.st_uid == 0)
    return 0; /* not root, no store yet, or root's own store */
  const struct passwd *pw = getpwuid(st.st_uid);
  gid_t gid = pw ? pw->pw_gid : st.st_gid;
  if ((pw ? initgroups(pw->pw_name, gid) : setgroups(0, NULL)) || setgid(gid) ||
      setuid(st.st_uid)) {
    fprintf(stderr, "snapctl: %s is owned by uid %u: acting as that user failed: %s\n",
            path, (unsigned)st.st_uid, strerror(errno));
    return CTL_FAIL;
  }
  if (setuid(0) == 0) { /* the drop must not be undoable */
    fprintf(stderr, "snapctl: could not give up root for %s\n", path);
    return CTL_FAIL;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct ctl c = {.cmd = "snapctl"};
  static const struct option opts[] = {{"store", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {0}};
  int opt;
  opterr = 0;
  /* '+': stop at the command name; its options are its own */
  while ((opt = getopt_long(argc, argv, "+:s:hV", opts, NULL)) != -1) {
    switch (opt) {
      case 's':
        c.store_path = optarg;
        break;
      case 'h':
        usage(stdout);
        return CTL_OK;
      case 'V':
        printf("snapctl %s (libsnap %s, segment format %d)\n", snap_version_string(),
               snap_version_string(), SNAP_FORMAT_VERSION);
        return CTL_OK;
      case ':':
        fprintf(stderr, "snapctl: option '%s' needs a value (see 'snapctl --help')\n",
                argv[optind - 1]);
        return CTL_USAGE;
      default:
        fprintf(stderr, "snapctl: unknown option '%s' (see 'snapctl --help')\n",
                argv[optind - 1]);
        return CTL_USAGE;
    }
  }
  if (c.store_path && !*c.store_path) {
    fprintf(stderr, "snapctl: --store: empty path\n");
    return CTL_USAGE;
  }
  if (optind >= argc) {
    fprintf(stderr, "snapctl: no command given (see 'snapctl --help')\n");
    return CTL_USAGE;
  }
  const char *name = argv[optind];
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(name, commands[i]->name)) continue;
    c.cmd = name;
    bool huge_init = false; /* init --huge mounts as root (see act_as_owner) */
    for (int a = optind + 1; !strcmp(name, "init") && a < argc; a++)
      huge_init |= !strcmp(argv[a], "--huge");
    const char *store = c.store_path ? c.store_path : getenv(SNAP_STORE_ENV);
    int rc = huge_init ? 0 : act_as_owner(store && *store ? store : SNAP_STORE_DEFAULT);
    if (rc) return rc;
    /* The command parses argv[optind..] with its own getopt from the start. */
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: full re-initialisation */
    return commands[i]->run(&c, sub_argc, sub_argv);
  }
  if (!strcmp(name, "help")) {
    usage(stdout);
    return CTL_OK;
  }
  fprintf(stderr, "snapctl: unknown command '%s' (see 'snapctl --help')\n", name);
  return CTL_USAGE;
}
