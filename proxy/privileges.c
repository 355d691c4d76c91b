/*
 * privileges.c — giving up root. See privileges.h.
 */
#include "portico/privileges.h"

#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool dropped; /* main thread only: set at the start, read by reloads */

/* Whether every id of the process is now uid/gid, and root is out of reach. */
static bool switched(uid_t uid, gid_t gid)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return false;
    if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid)
        return false;
    /* A saved root id or a leftover capability would let this succeed. */
    return uid == 0 || (setuid(0) != 0 && seteuid(0) != 0);
}

int privileges_drop(const char *user, uid_t uid, gid_t gid)
{
    const char *step = "initgroups";
    if (initgroups(user, gid) != 0)
        goto fail;
    step = "setgid";
    if (setgid(gid) != 0)
        goto fail;
    step = "setuid";
    if (setuid(uid) != 0)
        goto fail;
    if (!switched(uid, gid)) {
        fprintf(stderr, "portico: user %s: the switch to uid %u, gid %u did not take\n", user,
                (unsigned)uid, (unsigned)gid);
        return -1;
    }
    dropped = true;
    return 0;
fail:
    fprintf(stderr, "portico: user %s: %s: %s\n", user, step, strerror(errno));
    return -1;
}

bool privileges_dropped(void)
{
    return dropped;
}
