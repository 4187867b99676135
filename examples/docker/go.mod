module example.com/dockerapp

go 1.26
