/* critest's nonewprivs image runs this setuid-root program as uid 1000: it
 * prints "Effective uid: 0" unless no_new_privs kept the setuid from taking
 * effect ("Effective uid: 1000"), as Kubernetes' test/images/nonewprivs does. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
