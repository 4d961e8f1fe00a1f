/* master: the supervisor. It binds the listeners, forks the workers, replaces those that
 * die (with backoff when they die young), kills those that hang, and turns signals into
 * reloads, drains and scaling. It never serves a request. */
#ifndef SESSIOND_MASTER_H
#define SESSIOND_MASTER_H

#include "conf.h"
#include "upgrade.h"
#include "worker.h"

/* Run the supervisor until it stops; returns the process exit status. conf is owned by
 * the master from here on (it frees it on reload); reload re-reads the config on SIGHUP.
 * from is what a master this one replaces (USR2) handed over, from upgrade_take. */
int master_run(struct conf *conf, worker_reload_fn reload, const struct upgrade_from *from);

/* Serve in this process alone (clustering off): the same HTTP, HUP and TERM behaviour
 * without a master (and no USR2 of its own). */
int master_run_single(struct conf *conf, worker_reload_fn reload,
                      const struct upgrade_from *from);

#endif
