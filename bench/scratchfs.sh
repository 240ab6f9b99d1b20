# Sourced by bench/watch.sh and bench/run-vs-nq.sh: a fresh ext4 filesystem made with
# mkfs.ext4's defaults (so with a journal, as an ext4 is almost everywhere), on a sparse image
# file loop-mounted for one benchmark run.
#
# Why: the write benchmarks time creating inodes and fsyncing them. On an ext4 without a
# journal (this machine's root filesystem) the inode allocator skips every inode freed in the
# last few minutes, so creating a file there costs 0.05 ms or 0.9 ms depending on what the
# whole machine deleted lately; the same benchmark on /tmp swung 4x-10x within an hour. A
# filesystem made for the run starts in the same state every time. The scripts measure /tmp
# as well and print both.
#
#   scratch_fs_mount DIR   makes DIR.img (4 GiB sparse) and mounts it on DIR; returns 1 (after
#                          printing why) when it cannot: not root, no mkfs.ext4, no loop device
#   scratch_fs_unmount DIR unmounts DIR and removes DIR.img (safe to call when not mounted)

scratch_fs_mount() {
    local dir=$1
    mkdir -p "$dir"
    if [[ $(id -u) != 0 ]]; then echo "note: not root, so no scratch ext4 filesystem (loop mount)"; return 1; fi
    if ! command -v mkfs.ext4 >/dev/null; then echo "note: no mkfs.ext4, so no scratch ext4 filesystem"; return 1; fi
    if truncate -s 4G "$dir.img" && mkfs.ext4 -q -F "$dir.img" && mount -o loop "$dir.img" "$dir"; then
        return 0
    fi
    echo "note: could not make and loop-mount an ext4 image at $dir.img"
    rm -f "$dir.img"
    return 1
}

scratch_fs_unmount() {
    local dir=$1
    if mountpoint -q "$dir" 2>/dev/null; then umount "$dir" 2>/dev/null || umount -l "$dir"; fi
    rm -f "$dir.img"
}

# fs_desc DIR: the filesystem type of DIR, and for ext4 whether it has a journal (an ext4
# with one has a jbd2 entry for its device under /proc/fs/jbd2).
fs_desc() {
    local type dev
    type=$(df --output=fstype "$1" | tail -1)
    if [[ $type == ext4 ]]; then
        dev=$(basename "$(df --output=source "$1" | tail -1)")
        if compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then type="ext4 with journal"; else type="ext4 without journal"; fi
    fi
    echo "$type"
}
