package setup

import (
	"debug/elf"
	"fmt"
	"io"
)

// machines maps an ELF machine to the names `uname -m` gives it.
var machines = map[elf.Machine][]string{
	elf.EM_X86_64:    {"x86_64"},
	elf.EM_AARCH64:   {"aarch64", "arm64"},
	elf.EM_386:       {"i386", "i486", "i586", "i686"},
	elf.EM_ARM:       {"armv6l", "armv7l", "armv8l", "arm"},
	elf.EM_RISCV:     {"riscv64"},
	elf.EM_PPC64:     {"ppc64le", "ppc64"},
	elf.EM_S390:      {"s390x"},
	elf.EM_LOONGARCH: {"loongarch64"},
}

// binaryMachines reads the ELF header of the binary in r and returns the
// `uname -m` names of the CPUs it runs on (nil: a machine not listed
// here, not checked). A file that is not ELF (say, shoal built for macOS)
// cannot run on a Linux host and is an error.
func binaryMachines(name string, r io.ReaderAt) ([]string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("binary to install: %s is not a Linux executable (ELF): %v; give a shoal built for Linux", name, err)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("binary to install: %s is an ELF %v, not an executable", name, f.Type)
	}
	return machines[f.Machine], nil
}
