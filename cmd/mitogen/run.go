package main

func cmdRun(args []string) int {
	return 2
}
