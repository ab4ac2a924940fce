module github.com/hangar-vm/hangar

go 1.26
