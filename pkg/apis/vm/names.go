package vm

// DiskName is the name of a Wukong's disk as a Disk, and of the DataVolume
// and PVC that hold it: <wukong>-<disk>. Both parts may contain dashes, so
// the name alone does not say where one ends (see the disks storage's find).
func DiskName(wukong, disk string) string { return wukong + "-" + disk }
