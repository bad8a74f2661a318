/*
 * hpcnet lab: LD_PRELOAD shim loaded by every process of a lab node (via /etc/ld.so.preload).
 *
 * Answers ioctl(SIOCETHTOOL) ETHTOOL_GDRVINFO for the netdevs listed in TABLE (the node's hardware
 * profile: driver ib_ipoib / mlx5_core[ib_ipoib] / eth_ipoib..., bus_info) and passes every other
 * ioctl, and GDRVINFO for unlisted netdevs, to the real ioctl unchanged.
 *
 * Bullet-proof rules (it runs inside every process): no malloc, no stdio, no locks, errno preserved,
 * any failure (table missing, unreadable, line too long) falls back to the real ioctl.
 * Table format: one line per netdev, tab separated: name driver version fw_version bus_info,
 * "-" for an empty field; an empty version means the kernel release (what ethtool core reports).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef HPCNET_ETHTOOL_TABLE
#define HPCNET_ETHTOOL_TABLE "/etc/hpcnet-lab/ethtool-drvinfo"
#endif

typedef int (*ioctl_fn)(int, unsigned long, ...);

static int real_ioctl(int fd, unsigned long request, void *arg)
{
    static ioctl_fn next;
    if (!next)
        next = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    if (next)
        return next(fd, request, arg);
    return (int)syscall(SYS_ioctl, fd, request, arg);
}

static void copy_field(char *dst, size_t size, const char *src, size_t len)
{
    if (len == 1 && src[0] == '-')
        len = 0;
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Fill *info for ifname from the table; 1 when found. */
static int lookup(const char *ifname, struct ethtool_drvinfo *info)
{
    char buf[16384];
    ssize_t got = 0, n;
    int fd = open(HPCNET_ETHTOOL_TABLE, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    while (got < (ssize_t)sizeof(buf) - 1) {
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
    }
    close(fd);
    buf[got] = '\0';
    size_t namelen = strnlen(ifname, IFNAMSIZ);
    char *line = buf;
    while (line && *line) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        const char *field[5];
        size_t flen[5];
        int count = 0;
        char *p = line;
        while (count < 5) {
            char *tab = strchr(p, '\t');
            field[count] = p;
            flen[count] = tab ? (size_t)(tab - p) : strlen(p);
            count++;
            if (!tab)
                break;
            p = tab + 1;
        }
        if (count == 5 && flen[0] == namelen && memcmp(field[0], ifname, namelen) == 0) {
            __u32 cmd = info->cmd;
            memset(info, 0, sizeof(*info));
            info->cmd = cmd;
            copy_field(info->driver, sizeof(info->driver), field[1], flen[1]);
            copy_field(info->version, sizeof(info->version), field[2], flen[2]);
            copy_field(info->fw_version, sizeof(info->fw_version), field[3], flen[3]);
            copy_field(info->bus_info, sizeof(info->bus_info), field[4], flen[4]);
            if (info->version[0] == '\0') {
                struct utsname uts;
                if (uname(&uts) == 0)
                    copy_field(info->version, sizeof(info->version), uts.release, strlen(uts.release));
            }
            return 1;
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);

    if (request == SIOCETHTOOL && arg) {
        struct ifreq *ifr = (struct ifreq *)arg;
        struct ethtool_drvinfo *info = (struct ethtool_drvinfo *)ifr->ifr_data;
        if (info && info->cmd == ETHTOOL_GDRVINFO) {
            int saved = errno;
            char name[IFNAMSIZ + 1];
            memcpy(name, ifr->ifr_name, IFNAMSIZ);
            name[IFNAMSIZ] = '\0';
            if (lookup(name, info)) {
                errno = saved;
                return 0;
            }
            errno = saved;
        }
    }
    return real_ioctl(fd, request, arg);
}
