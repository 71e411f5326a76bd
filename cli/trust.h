/* `iotmock trust` / `iotmock untrust`: the state directory's root CA in or out of the system
 * trust store, for clients that know only the system store (shared/spec/clients.md §1, §6). */
#ifndef IOTMOCK_TRUST_H
#define IOTMOCK_TRUST_H

#include <stdbool.h>

/* ARGV[0] is the subcommand; ADD: trust, else untrust. Returns the exit status. */
int trust_main(int argc, char **argv, bool add);

#endif
