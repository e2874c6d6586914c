"""rspg/ — Retrieval Selection for Personalized Generation (LaMP spec section 9): see README.md."""
