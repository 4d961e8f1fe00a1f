#include "cores.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* cpu.max, cpu.cfs_quota_us and cpu.cfs_period_us hold one short line each. */
#define CORES_FILE_MAX 64
/* One line of /proc/self/cgroup: an id, a controller list and a cgroup path. */
#define CORES_LINE_MAX (PATH_MAX + 128)
/* The largest affinity mask we ask for; the kernel's NR_CPUS is at most 8192 today. */
#define CORES_MAX_CPUS (1 << 18)
/* Float division can give 2.0000000001 for a quota of exactly 2 CPUs; that is 2, not 3. */
#define CORES_EPSILON 1e-6

/* Our cgroup paths from /proc/self/cgroup; an empty string when there is no such line. */
struct cgroup_paths {
    char v1[CORES_LINE_MAX]; /* the v1 hierarchy with the cpu controller */
    char v2[CORES_LINE_MAX]; /* the v2 unified hierarchy ("0::/path") */
};

/* Reads one level's limit from the files in dir: 0 and *cpus set (0 = none), or -1. */
typedef int (*level_reader)(const char *dir, double *cpus);

/* Reads a whole small file into buf as a string. Fails if it does not fit. */
static int
read_small(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, size - 1, f);
    int failed = ferror(f) || n == size - 1;
    (void)fclose(f);
    if (failed) return -1;
    buf[n] = '\0';
    return 0;
}

/* out = root without trailing slashes + rel (which starts with '/'). */
static int
join(char *out, size_t size, const char *root, const char *rel)
{
    size_t len = strlen(root);
    while (len > 0 && root[len - 1] == '/')
        len--;
    int n = snprintf(out, size, "%.*s%s", (int)len, root, rel);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

/* Parses a decimal integer without sign or leading space, advancing *sp past it. */
static int
parse_uint(const char **sp, long long *out)
{
    const char *s = *sp;
    long long v = 0;
    if (*s < '0' || *s > '9') return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (LLONG_MAX - (*s - '0')) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    *sp = s;
    *out = v;
    return 0;
}

static int
only_space(const char *s)
{
    return s[strspn(s, " \t\n")] == '\0';
}

/* A positive integer filling the whole text, give or take trailing whitespace. */
static int
parse_positive(const char *text, long long *out)
{
    return text != NULL && parse_uint(&text, out) == 0 && *out > 0 && only_space(text) ? 0 : -1;
}

int
cores_parse_cpu_max(const char *text, double *cpus)
{
    long long quota = -1, period;
    const char *s = text;
    if (s == NULL) return -1;
    if (strncmp(s, "max", 3) == 0)
        s += 3;
    else if (parse_uint(&s, &quota) < 0 || quota == 0)
        return -1;
    if (only_space(s) && quota < 0) { /* "max" without a period: no limit either */
        *cpus = 0;
        return 0;
    }
    if (*s != ' ' && *s != '\t') return -1;
    if (parse_positive(s + strspn(s, " \t"), &period) < 0) return -1;
    *cpus = quota < 0 ? 0 : (double)quota / (double)period;
    return 0;
}

int
cores_parse_cfs(const char *quota_text, const char *period_text, double *cpus)
{
    long long quota = -1, period;
    if (quota_text == NULL) return -1;
    int unlimited = strncmp(quota_text, "-1", 2) == 0 && only_space(quota_text + 2);
    if (!unlimited && parse_positive(quota_text, &quota) < 0) return -1;
    if (parse_positive(period_text, &period) < 0) return -1;
    *cpus = unlimited ? 0 : (double)quota / (double)period;
    return 0;
}

static int
read_cpu_max(const char *dir, double *cpus)
{
    char path[PATH_MAX], text[CORES_FILE_MAX];
    if (join(path, sizeof path, dir, "/cpu.max") < 0 || read_small(path, text, sizeof text) < 0)
        return -1;
    return cores_parse_cpu_max(text, cpus);
}

static int
read_cfs(const char *dir, double *cpus)
{
    char path[PATH_MAX], quota[CORES_FILE_MAX], period[CORES_FILE_MAX];
    if (join(path, sizeof path, dir, "/cpu.cfs_quota_us") < 0 ||
        read_small(path, quota, sizeof quota) < 0)
        return -1;
    if (join(path, sizeof path, dir, "/cpu.cfs_period_us") < 0 ||
        read_small(path, period, sizeof period) < 0)
        return -1;
    return cores_parse_cfs(quota, period, cpus);
}

/* Reads every level from base + path up to base itself, keeping the smallest positive limit in
 * *limit (0 = none): a child cgroup never gets more CPU time than its parent's quota. Missing
 * directories are skipped, as a container often does not see its host path; a path too long
 * for the buffer counts as base alone. Returns how many levels had readable files. */
static int
walk_up(const char *base, const char *path, level_reader read_level, double *limit)
{
    char dir[PATH_MAX];
    size_t base_len = strlen(base);
    if (join(dir, sizeof dir, base, path) < 0 && join(dir, sizeof dir, base, "") < 0) return 0;
    size_t len = strlen(dir);
    int found = 0;
    *limit = 0;
    for (;;) {
        while (len > base_len && dir[len - 1] == '/')
            dir[--len] = '\0';
        double cpus;
        if (read_level(dir, &cpus) == 0) {
            found++;
            if (cpus > 0 && (*limit == 0 || cpus < *limit)) *limit = cpus;
        }
        if (len <= base_len) return found;
        while (len > base_len && dir[len - 1] != '/')
            len--;
        dir[len] = '\0';
    }
}

/* Whether the comma-separated controller list names "cpu" itself (not "cpuacct" or "cpuset"). */
static int
has_cpu_controller(const char *list)
{
    for (const char *p = list;; p++) {
        size_t n = strcspn(p, ",");
        if (n == 3 && memcmp(p, "cpu", 3) == 0) return 1;
        p += n;
        if (*p == '\0') return 0;
    }
}

/* Whether the path has a ".." component. */
static int
climbs(const char *path)
{
    for (const char *p = path; *p != '\0'; p += strspn(p, "/")) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') return 1;
        p += n;
    }
    return 0;
}

/* A path that is not absolute or climbs with ".." (a cgroup outside our namespace) would lead
 * outside the mount, so such a path counts as the mount root. */
static void
set_path(char *out, size_t size, const char *path)
{
    snprintf(out, size, "%s", path[0] != '/' || climbs(path) ? "/" : path);
}

/* Notes one "hierarchy-id:controllers:path" line. */
static void
note_line(char *line, struct cgroup_paths *cp)
{
    line[strcspn(line, "\n")] = '\0';
    char *controllers = strchr(line, ':');
    char *path = controllers != NULL ? strchr(controllers + 1, ':') : NULL;
    if (path == NULL) return;
    *controllers++ = '\0';
    *path++ = '\0';
    if (strcmp(line, "0") == 0 && *controllers == '\0')
        set_path(cp->v2, sizeof cp->v2, path);
    else if (has_cpu_controller(controllers))
        set_path(cp->v1, sizeof cp->v1, path);
}

/* Reads root/proc/self/cgroup line by line, skipping lines too long for the buffer. */
static int
read_cgroup_paths(const char *root, struct cgroup_paths *cp)
{
    char path[PATH_MAX], line[CORES_LINE_MAX];
    cp->v1[0] = cp->v2[0] = '\0';
    FILE *f = join(path, sizeof path, root, "/proc/self/cgroup") == 0 ? fopen(path, "re") : NULL;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strchr(line, '\n') == NULL && !feof(f)) {
            int c;
            while ((c = getc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        note_line(line, cp);
    }
    (void)fclose(f);
    return 0;
}

/* The v1 cpu limit; -1 when no v1 cpu files could be read at any level. */
static double
v1_limit(const char *root, const char *path)
{
    static const char *const mounts[] = {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"};
    char base[PATH_MAX];
    struct stat st;
    for (size_t i = 0; i < sizeof mounts / sizeof *mounts; i++) {
        if (join(base, sizeof base, root, mounts[i]) < 0) return -1;
        if (stat(base, &st) == 0 && S_ISDIR(st.st_mode)) {
            double limit;
            return walk_up(base, path, read_cfs, &limit) > 0 ? limit : -1;
        }
    }
    return -1;
}

double
cores_cgroup_limit(const char *root)
{
    struct cgroup_paths cp;
    char base[PATH_MAX];
    if (read_cgroup_paths(root, &cp) < 0) return 0;
    double limit = cp.v1[0] != '\0' ? v1_limit(root, cp.v1) : -1;
    if (limit >= 0) return limit;
    if (cp.v2[0] == '\0' || join(base, sizeof base, root, "/sys/fs/cgroup") < 0) return 0;
    walk_up(base, cp.v2, read_cpu_max, &limit);
    return limit;
}

int
cores_combine(int affinity, double limit)
{
    int n = affinity;
    if (limit > 0) {
        double wanted = ceil(limit - CORES_EPSILON);
        if (wanted < n) n = (int)wanted;
    }
    return n < 1 ? 1 : n;
}

/* CPUs in our affinity mask, growing the set while the kernel says it is too small. */
static int
affinity_count(void)
{
    for (int ncpus = 1024; ncpus <= CORES_MAX_CPUS; ncpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpus);
        if (set == NULL) return -1;
        size_t size = CPU_ALLOC_SIZE(ncpus);
        int rc = sched_getaffinity(0, size, set);
        int saved = errno;
        int count = rc == 0 ? CPU_COUNT_S(size, set) : -1;
        CPU_FREE(set);
        if (rc == 0 || saved != EINVAL) return count;
    }
    return -1;
}

int
cores_available(void)
{
    int n = affinity_count();
    if (n < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 && online <= INT_MAX ? (int)online : 1;
    }
    return cores_combine(n, cores_cgroup_limit("/"));
}
