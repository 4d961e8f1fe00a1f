/* cores: cgroup quota parsing, the cgroup walk on fixture trees, and the final count.
 * Fixture roots are relative: the unit tests run with cwd = test/unit. */
#include <unistd.h>

#include "cores.h"
#include "suites.h"

#define FIXTURE(name) "fixtures/cgroup/" name
#define TOL 1e-9

static const struct {
    const char *text;
    double cpus;
} cpu_max_ok[] = {
    {"max 100000\n", 0},
    {"max\n", 0},
    {"max", 0},
    {"150000 100000\n", 1.5},
    {"50000 100000", 0.5},
    {"200000 100000\n", 2},
    {"1000 1000000\n", 0.001},
    {"250000 100000 \n", 2.5},
};

START_TEST(parse_cpu_max_ok)
{
    double cpus = -42;
    ck_assert_int_eq(cores_parse_cpu_max(cpu_max_ok[_i].text, &cpus), 0);
    ck_assert_double_eq_tol(cpus, cpu_max_ok[_i].cpus, TOL);
}
END_TEST

static const char *const cpu_max_bad[] = {
    "",
    "\n",
    "abc",
    "max abc",
    "150000 0",
    "150000 -1",
    "-150000 100000",
    "150000",
    "150000\n",
    "150000 100000 7",
    "maxi 100000",
    "1.5 100000",
    "max 0",
    "0 100000",
    " 150000 100000",
    "150000 abc",
    "99999999999999999999 100000",
};

START_TEST(parse_cpu_max_bad)
{
    double cpus = -42;
    ck_assert_msg(cores_parse_cpu_max(cpu_max_bad[_i], &cpus) == -1, "accepted \"%s\"",
                  cpu_max_bad[_i]);
}
END_TEST

START_TEST(parse_cpu_max_null)
{
    double cpus;
    ck_assert_int_eq(cores_parse_cpu_max(NULL, &cpus), -1);
}
END_TEST

static const struct {
    const char *quota, *period;
    double cpus;
} cfs_ok[] = {
    {"-1\n", "100000\n", 0},   {"-1", "100000", 0},          {"150000\n", "100000\n", 1.5},
    {"250000", "100000", 2.5}, {"50000\n", "100000\n", 0.5}, {"100000\n", "100000\n", 1},
};

START_TEST(parse_cfs_ok)
{
    double cpus = -42;
    ck_assert_int_eq(cores_parse_cfs(cfs_ok[_i].quota, cfs_ok[_i].period, &cpus), 0);
    ck_assert_double_eq_tol(cpus, cfs_ok[_i].cpus, TOL);
}
END_TEST

static const struct {
    const char *quota, *period;
} cfs_bad[] = {
    {"", "100000"},         {"abc", "100000"}, {"150000", "0"},  {"150000", "-100000"},
    {"-2", "100000"},       {"-10", "100000"}, {"150000", ""},   {"0", "100000"},
    {"1.5", "100000"},      {"-1", "abc"},     {"150000", NULL}, {NULL, "100000"},
    {"150000 1", "100000"},
};

START_TEST(parse_cfs_bad)
{
    double cpus = -42;
    ck_assert_msg(cores_parse_cfs(cfs_bad[_i].quota, cfs_bad[_i].period, &cpus) == -1,
                  "accepted quota \"%s\" period \"%s\"",
                  cfs_bad[_i].quota ? cfs_bad[_i].quota : "(null)",
                  cfs_bad[_i].period ? cfs_bad[_i].period : "(null)");
}
END_TEST

static const struct {
    const char *root;
    double cpus;
} limits[] = {
    {FIXTURE("v2_leaf"), 1.5},     {FIXTURE("v2_max"), 0},         {FIXTURE("v2_parent"), 2},
    {FIXTURE("v2_fraction"), 0.5}, {FIXTURE("v2_malformed"), 2},   {FIXTURE("v2_container"), 3},
    {FIXTURE("v2_dotdot"), 1},     {FIXTURE("v1_cfs"), 2.5},       {FIXTURE("v1_unlimited"), 0},
    {FIXTURE("v1_cpu_mount"), 3},  {FIXTURE("v1_container"), 1.5}, {FIXTURE("hybrid_v1"), 2.5},
    {FIXTURE("hybrid_v2"), 1},     {FIXTURE("missing"), 0},        {FIXTURE("no-such-root"), 0},
    {FIXTURE("v1_cfs/"), 2.5},
};

START_TEST(cgroup_limit_fixtures)
{
    ck_assert_double_eq_tol(cores_cgroup_limit(limits[_i].root), limits[_i].cpus, TOL);
}
END_TEST

START_TEST(cgroup_limit_fraction_combines_to_one)
{
    ck_assert_int_eq(cores_combine(8, cores_cgroup_limit(FIXTURE("v2_fraction"))), 1);
}
END_TEST

static const struct {
    int affinity;
    double limit;
    int want;
} combos[] = {
    {8, 1.5, 2},  {1, 4, 1},  {8, 0, 8}, {8, 0.2, 1}, {8, 2.0, 2},   {8, 2.0000001, 2}, {8, 2.5, 3},
    {4, 1e30, 4}, {8, -1, 8}, {0, 0, 1}, {-3, 2, 1},  {64, 1e-9, 1}, {64, 0.5, 1},
};

START_TEST(combine_table)
{
    ck_assert_msg(cores_combine(combos[_i].affinity, combos[_i].limit) == combos[_i].want,
                  "cores_combine(%d, %g) = %d, want %d", combos[_i].affinity, combos[_i].limit,
                  cores_combine(combos[_i].affinity, combos[_i].limit), combos[_i].want);
}
END_TEST

START_TEST(available_in_range)
{
    int n = cores_available();
    ck_assert_int_ge(n, 1);
    ck_assert_int_le(n, sysconf(_SC_NPROCESSORS_CONF));
}
END_TEST

#define NELEM(a) ((int)(sizeof(a) / sizeof *(a)))

Suite *
cores_suite(void)
{
    Suite *s = suite_create("cores");
    TCase *parse = tcase_create("parse");
    tcase_add_loop_test(parse, parse_cpu_max_ok, 0, NELEM(cpu_max_ok));
    tcase_add_loop_test(parse, parse_cpu_max_bad, 0, NELEM(cpu_max_bad));
    tcase_add_test(parse, parse_cpu_max_null);
    tcase_add_loop_test(parse, parse_cfs_ok, 0, NELEM(cfs_ok));
    tcase_add_loop_test(parse, parse_cfs_bad, 0, NELEM(cfs_bad));
    suite_add_tcase(s, parse);

    TCase *cgroup = tcase_create("cgroup");
    tcase_add_loop_test(cgroup, cgroup_limit_fixtures, 0, NELEM(limits));
    tcase_add_test(cgroup, cgroup_limit_fraction_combines_to_one);
    suite_add_tcase(s, cgroup);

    TCase *count = tcase_create("count");
    tcase_add_loop_test(count, combine_table, 0, NELEM(combos));
    tcase_add_test(count, available_in_range);
    suite_add_tcase(s, count);
    return s;
}
