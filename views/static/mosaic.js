// mosaic page enhancements (progress); filled in later
