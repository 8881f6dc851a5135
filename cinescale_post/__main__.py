from cinescale_post.cli import main

main()
