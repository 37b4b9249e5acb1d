/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapctl: operations on a libsnap store. `snapctl [--store PATH] COMMAND [ARGS]`.
 * Each command lives in its own cmd_*.c file and uses libsnap's public API only.
 * Exit status: 0 success, 1 operational error, 2 usage error.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapctl.h"

static const struct ctl_command *const commands[] = {
    &ctl_cmd_init,   &ctl_cmd_list,    &ctl_cmd_info,     &ctl_cmd_readers,
    &ctl_cmd_gc,     &ctl_cmd_publish, &ctl_cmd_rollback, &ctl_cmd_drop,
    &ctl_cmd_verify, &ctl_cmd_export,  &ctl_cmd_doctor,
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
