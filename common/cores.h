/* cores: how many CPUs this process may really use.
 *
 * The count is the CPUs in our sched_getaffinity mask, capped by the CPU quota of our
 * cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us), rounded up, and at
 * least 1. A container limited to 1.5 CPUs on a 64-core host gets 2, not 64. */
#ifndef SESSIOND_CORES_H
#define SESSIOND_CORES_H

/* Parse the text of a cgroup v2 cpu.max file ("max 100000" or "150000 100000").
 * Sets *cpus to quota/period, or to 0 when there is no limit. Returns 0 or -1 if malformed. */
int cores_parse_cpu_max(const char *text, double *cpus);

/* Parse cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us texts ("-1" quota = no limit).
 * Sets *cpus as above. Returns 0 or -1 if malformed. */
int cores_parse_cfs(const char *quota_text, const char *period_text, double *cpus);

/* The CPU limit from the cgroup files under root ("/" in production, a fixture directory in
 * tests): reads root/proc/self/cgroup to find our cgroup, then the v2 or v1 files under
 * root/sys/fs/cgroup, taking the tightest limit on the path from our cgroup up to the root.
 * Returns the limit in CPUs, or 0 when there is none or it cannot be read. */
double cores_cgroup_limit(const char *root);

/* Combine an affinity count with a cgroup limit (0 = none): ceil(limit), capped by
 * affinity, at least 1. */
int cores_combine(int affinity, double limit);

/* The number for "workers auto": cores_combine(affinity count, cores_cgroup_limit("/")). */
int cores_available(void);

#endif
