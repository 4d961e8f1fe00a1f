/* upgrade and the listener pool: what a new master reads from SESSIOND_UPGRADE and from
 * systemd's LISTEN_FDS, and how listener_open takes an inherited socket instead of
 * binding. Check forks each test, so the environment and the pool are the test's own. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "suites.h"
#include "upgrade.h"

/* A socket listening on 127.0.0.1 at a port the kernel picks; its port into *port. */
static int
listening(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct conf_listen
loopback(int port)
{
    struct conf_listen l = {.family = AF_INET, .host = "127.0.0.1", .port = port};
    snprintf(l.text, sizeof l.text, "127.0.0.1:%d", port);
    return l;
}

START_TEST(handover_is_read_and_its_sockets_taken)
{
    int pa, pb;
    int a = listening(&pa), b = listening(&pb);
    char value[96], err[256];
    snprintf(value, sizeof value, "4242 7 8 128 lmdb %d,%d", a, b);
    setenv(UPGRADE_ENV, value, 1);
    struct upgrade_from u;
    ck_assert_int_eq(upgrade_take(&u, err, sizeof err), 0);
    ck_assert_int_eq(u.pid, 4242);
    ck_assert_int_eq(u.lock, 7);
    ck_assert_int_eq(u.ready, 8);
    ck_assert_int_eq(u.base, 128);
    ck_assert_str_eq(u.store, "lmdb");
    ck_assert_ptr_null(getenv(UPGRADE_ENV)); /* not for the workers */
    /* The listen for b's address gets b itself, non-blocking and close-on-exec. */
    struct conf_listen lb = loopback(pb);
    ck_assert_int_eq(listener_open(&lb, 16, err, sizeof err), b);
    ck_assert_int_ne(fcntl(b, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(b, F_GETFD) & FD_CLOEXEC, 0);
    /* An address no inherited socket holds is bound anew. */
    int pc;
    int c = listening(&pc);
    close(c);
    struct conf_listen lc = loopback(pc);
    int fresh = listener_open(&lc, 16, err, sizeof err);
    ck_assert_int_ge(fresh, 0);
    ck_assert_int_ne(fresh, a);
    close(fresh);
    /* a, which no listen named, is closed. */
    ck_assert_int_eq(listener_close_inherited(), 1);
    ck_assert_int_eq(fcntl(a, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
    close(b);
}
END_TEST

START_TEST(no_handover_is_no_upgrade)
{
    unsetenv(UPGRADE_ENV);
    struct upgrade_from u;
    char err[128];
    ck_assert_int_eq(upgrade_take(&u, err, sizeof err), 0);
    ck_assert_int_eq(u.pid, 0);
    ck_assert_int_eq(u.lock, -1);
    ck_assert_int_eq(u.ready, -1);
}
END_TEST

START_TEST(a_value_that_is_not_ours_is_refused)
{
    static const char *const bad[] = {"",
                                      "x",
                                      "1 2 3",
                                      "1 2 3 0",
                                      "1 2 3 0 lmdb 4,",
                                      "1 2 3 0 LMDB",
                                      "0 2 3 0 lmdb",
                                      "1 2 3 0 lmdb x",
                                      "1 -2 3 0 lmdb",
                                      "1 2 3 0 lmdbx! 4",
                                      "1 2 3 0 lmdb 99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct upgrade_from u;
        char err[256] = "";
        setenv(UPGRADE_ENV, bad[i], 1);
        ck_assert_msg(upgrade_take(&u, err, sizeof err) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_msg(strstr(err, "SESSIOND_UPGRADE=") != NULL, "%s", err);
    }
}
END_TEST

START_TEST(systemd_sockets_are_ours_only_when_the_pid_is)
{
    char pid[32], err[128];
    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "a:b", 1);
    ck_assert_int_eq(listener_from_systemd(err, sizeof err), 0);
    ck_assert_ptr_null(getenv("LISTEN_FDS")); /* removed either way */
    ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    ck_assert_int_eq(listener_from_systemd(err, sizeof err), 2);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "two", 1);
    ck_assert_int_eq(listener_from_systemd(err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "LISTEN_FDS=two"));
}
END_TEST

Suite *
upgrade_suite(void)
{
    Suite *s = suite_create("upgrade");
    TCase *tc = tcase_create("handover");
    tcase_add_test(tc, handover_is_read_and_its_sockets_taken);
    tcase_add_test(tc, no_handover_is_no_upgrade);
    tcase_add_test(tc, a_value_that_is_not_ours_is_refused);
    tcase_add_test(tc, systemd_sockets_are_ours_only_when_the_pid_is);
    suite_add_tcase(s, tc);
    return s;
}
