"""Build LaMP_6 / email data from the licensed Avocado corpus."""
